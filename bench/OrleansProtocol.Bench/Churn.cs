using System.Diagnostics;
using System.Net.Sockets;

namespace OrleansProtocol.Bench;

/// <summary>
/// Connection churn: each worker connects, makes one 64 B echo round trip, half-closes and waits for the server's FIN,
/// over and over — on the gateway the whole lifecycle: accept, <c>ConnectionMade</c>, <c>DataReceived</c>,
/// <c>EofReceived</c>, close, <c>ConnectionLost</c>, deactivation. Connections per second and server CPU per connection.
/// </summary>
internal static class Churn
{
    public static async Task RunAsync(Settings settings)
    {
        Console.WriteLine(
            $"connection churn (connect, one 64 B echo, close), {settings.Rounds} rounds of {settings.Duration.TotalSeconds:0} s per server and worker count " +
            $"after {settings.Warmup.TotalSeconds:0} s warm-up each, medians shown; {Environment.ProcessorCount} cores shared by client and servers");
        using var servers = await ServerSet.StartAsync(settings);
        Console.WriteLine();
        Console.WriteLine("| workers | server | connections/s | server CPU µs/connection | p50 µs | p99 µs | connections/s vs baseline | CPU vs baseline | allocated B/connection |");
        Console.WriteLine("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var workers in settings.Connections)
        {
            var results = await servers.AlternateAsync(settings, server => RunOnceAsync(server, workers, settings));
            var b = results[0].Result;
            foreach (var (name, r) in results)
            {
                Console.WriteLine($"| {workers} | {name} | {r.RequestsPerSecond:N0} | {r.ServerCpuMicrosPerRequest:N0} | {r.P50Micros:N0} | {r.P99Micros:N0} | "
                    + (ReferenceEquals(r, b) ? "| | " : $"{r.RequestsPerSecond / b.RequestsPerSecond:P0} | {r.ServerCpuMicrosPerRequest / b.ServerCpuMicrosPerRequest:N2}× | ")
                    + (r.AllocatedBytesPerRequest is { } x ? $"{x:N0} |" : "|"));
            }
        }
    }

    private static Task<LoadResult> RunOnceAsync(ServerProcess server, int workers, Settings settings) =>
        Measurement.RunAsync(server, workers, settings, async (_, stopped, record) =>
        {
            var message = new byte[64];
            var echo = new byte[64];
            while (!stopped())
            {
                var start = Stopwatch.GetTimestamp();
                using (var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true })
                {
                    await socket.ConnectAsync(server.EndPoint);
                    await socket.SendAsync(message);
                    for (var read = 0; read < echo.Length;)
                    {
                        var n = await socket.ReceiveAsync(echo.AsMemory(read));
                        read += n > 0 ? n : throw new IOException("the server closed before echoing");
                    }

                    // Half-close and wait for the server's FIN: the connection's whole life is in the figure.
                    socket.Shutdown(SocketShutdown.Send);
                    while (await socket.ReceiveAsync(echo) > 0)
                    {
                    }
                }

                record(Stopwatch.GetTimestamp() - start, 1);
            }
        });
}
