using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace OrleansProtocol.Tests.Infrastructure;

/// <summary>A real redis-server on a free loopback port, no persistence: membership for process tests, or a reference.</summary>
public static class RedisServer
{
    public const string Path = "/usr/bin/redis-server";

    public const string NotInstalled = "redis-server is not installed on this machine (.ci/run installs it)";

    public static bool Installed => File.Exists(Path);

    /// <summary>
    /// Starts one and waits until it answers; the caller kills it. <paramref name="bind"/> <c>0.0.0.0</c> serves other
    /// network namespaces too (the fault lab's silos), with protected mode off as it has no password.
    /// </summary>
    public static async Task<(Process Redis, int Port)> StartAsync(string bind = "127.0.0.1")
    {
        var port = TestPorts.Free();
        var redis = Process.Start(new ProcessStartInfo(Path, ["--port", $"{port}", "--bind", bind, "--protected-mode", bind == "127.0.0.1" ? "yes" : "no", "--save", "", "--appendonly", "no"])
        {
            RedirectStandardOutput = true,
        })!;
        await WaitForAsync(port);
        return (redis, port);
    }

    private static async Task WaitForAsync(int port)
    {
        // redis-server says nothing we can await; poll its port until it answers PING (bounded).
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                await using var client = await TestClient.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port));
                await client.SendAsync("PING\r\n");
                if ((await client.ReadLineAsync()).StartsWith("+PONG", StringComparison.Ordinal))
                {
                    return;
                }
            }
            catch (SocketException) when (deadline.Elapsed < TestTimeouts.Default)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(50));
            }
        }
    }
}
