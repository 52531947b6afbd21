using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using OrleansProtocol.Tests.Infrastructure;
using OrleansProtocol.Tests.TestGrains;

namespace OrleansProtocol.Tests;

/// <summary>Unix domain sockets both ways: asyncio's create_unix_server and create_unix_connection.</summary>
[Collection(GatewayCollection.Name)]
public sealed class UnixSocketTests(GatewayClusterFixture fixture)
{
    // Short: a socket path holds at most 107 bytes.
    private static string SocketPath() => Path.Combine(Path.GetTempPath(), $"op-{Guid.NewGuid().ToString("N")[..10]}.sock");

    [Fact]
    public async Task A_listener_on_a_socket_file_serves_nc_U_reports_asyncio_names_and_removes_its_file_when_closed()
    {
        var path = SocketPath();

        // A stale socket file from a server that did not close is replaced, as asyncio does.
        await File.WriteAllBytesAsync(path, []);
        var server = await fixture.Gateway.CreateServerAsync<ScriptGrain>($"unix-{Guid.NewGuid():N}", o => o.UnixSocketPath = path);
        Assert.Equal(path, server.EndPoints[0].ToString());
        Assert.True(File.Exists(path));

        await using (var client = await TestClient.ConnectUnixAsync(path))
        {
            // sockname is the socket file, peername empty (the client is unnamed): asyncio's values.
            await client.SendAsync("extra\n");
            Assert.Equal($" {path} default", await client.ReadLineAsync());
            await client.SendAsync("echo over a unix socket\n");
            Assert.Equal("over a unix socket", await client.ReadLineAsync());
            var status = Assert.Single(await fixture.Grains.ListConnectionStatusAsync(server.Name));
            Assert.Equal(path, status.Info.LocalPath);
            Assert.Equal("", status.Info.RemotePath);
            Assert.Null(status.Info.RemoteEndPoint);
        }

        // The protocol's Abort on a Unix socket: the peer's stream ends (there is no RST), and the connection is gone.
        await using (var aborted = await TestClient.ConnectUnixAsync(path))
        {
            await aborted.SendAsync("abort-after 0\n");
            Assert.Empty(await aborted.ReadToEndAsync());
            await Poll.UntilAsync(() => server.ConnectionCount == 0, () => $"{server.ConnectionCount} connections left");
        }

        if (File.Exists("/usr/bin/nc") || File.Exists("/bin/nc"))
        {
            // The real client: netcat on the socket file, closing its side after its input.
            using var nc = Process.Start(new ProcessStartInfo("bash", ["-c", $"printf 'echo from nc\\n' | nc -N -U {path}"]) { RedirectStandardOutput = true })!;
            Assert.Equal("from nc", (await nc.StandardOutput.ReadToEndAsync().WaitAsync(TestTimeouts.Default)).TrimEnd('\n'));
            await nc.WaitForExitAsync().WaitAsync(TestTimeouts.Default);
        }

        await server.DisposeAsync();
        Assert.False(File.Exists(path), "the socket file outlived its listener");
    }

    [Fact]
    public async Task A_grain_opens_a_unix_connection_whose_peername_is_the_path_and_a_missing_path_is_refused()
    {
        var path = SocketPath();
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen();
        try
        {
            var accepting = listener.AcceptAsync();
            var info = await fixture.Grains.CreateUnixConnectionAsync<ScriptGrain>(path);
            Assert.Equal(path, info.RemotePath);
            Assert.Equal("", info.LocalPath);
            Assert.Equal($"outbound:unix:{path}", info.ListenerName);

            using var peer = await accepting.WaitAsync(TestTimeouts.Default);
            await peer.SendAsync("extra\n"u8.ToArray());
            var reply = new byte[256];
            var read = 0;
            while (!reply.AsSpan(0, read).Contains((byte)'\n'))
            {
                read += await peer.ReceiveAsync(reply.AsMemory(read)).AsTask().WaitAsync(TestTimeouts.Default);
            }

            Assert.Equal($"{path}  default\n", Encoding.UTF8.GetString(reply, 0, read));
        }
        finally
        {
            File.Delete(path);
        }

        var refused = await Assert.ThrowsAsync<ProtocolConnectException>(() => fixture.Grains.CreateUnixConnectionAsync<ScriptGrain>(SocketPath()));
        Assert.Contains("Could not connect to unix:", refused.Message);
    }
}
