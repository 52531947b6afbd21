using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using OrleansProtocol.Gateway;
using OrleansProtocol.Samples;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests;

/// <summary>
/// The per-address limit behind a load balancer: it counts the client the PROXY header names, not the balancer, and
/// gives back what it took — with raw v1/v2 headers and behind a real haproxy.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class ProxyLimitTests(GatewayClusterFixture fixture)
{
    private const string Refusal = "-ERR max number of clients reached\r\n";

    private Task<ProtocolServer> CreateAsync(int perAddress) =>
        fixture.Gateway.CreateServerAsync<EchoGrain>($"proxied-{Guid.NewGuid():N}", o =>
        {
            o.Port = 0;
            o.ProxyProtocol = true;
            o.ProxyTrustedNetworks = "127.0.0.0/8";
            o.MaxConnectionsPerAddress = perAddress;
            o.RefusalMessage = Refusal;
        });

    private static byte[] Header(int version, string client, int port) => version == 1
        ? System.Text.Encoding.ASCII.GetBytes($"PROXY TCP4 {client} 10.0.0.1 {port} 7000\r\n")
        : ProxyProtocolTests.V2Tcp4(client, (ushort)port, "10.0.0.1", 7000);

    /// <summary>A client that echoes one line and closes; false if it was refused.</summary>
    private static async Task<bool> ServedAsync(TestClient client, string line)
    {
        await client.SendAsync(line + "\n");
        var reply = await client.ReadLineAsync();
        if (reply + "\n" == Refusal.Replace("\r", ""))
        {
            return false;
        }

        Assert.Equal(line, reply);
        return true;
    }

    /// <summary>Closes a served client the clean way and waits for the server's FIN.</summary>
    private static async Task CloseAsync(TestClient client)
    {
        client.ShutdownSend();
        Assert.Empty(await client.ReadToEndAsync());
        await client.DisposeAsync();
    }

    /// <summary>Drains the server (it waits for every connection to end), then no per-address place may be left.</summary>
    private static async Task AssertPlacesGivenBackAsync(ProtocolServer server)
    {
        await server.DisposeAsync();
        Assert.Equal(0, server.CountedAddresses);
    }

    [Fact]
    public async Task Two_thousand_sequential_proxied_connections_from_one_client_are_all_served()
    {
        await using var server = await CreateAsync(perAddress: 5);
        for (var i = 0; i < 2000; i++)
        {
            var client = await TestClient.ConnectAsync(server.EndPoints[0]);
            await client.SendAsync(Header(1 + (i % 2), "203.0.113.7", 1024 + i));
            Assert.True(await ServedAsync(client, $"hello {i}"), $"connection {i} was refused");
            await CloseAsync(client);
        }

        await AssertPlacesGivenBackAsync(server);
        Assert.Equal(0, server.RefusedConnections);
    }

    [Fact]
    public async Task Sixty_concurrent_clients_from_sixty_addresses_are_all_served_and_the_fifty_first_from_one_is_refused()
    {
        await using var server = await CreateAsync(perAddress: 50);
        var distinct = new List<TestClient>();
        for (var i = 0; i < 60; i++)
        {
            var client = await TestClient.ConnectAsync(server.EndPoints[0]);
            await client.SendAsync(Header(1 + (i % 2), $"198.51.100.{i + 1}", 40000));
            distinct.Add(client);
        }

        for (var i = 0; i < 60; i++)
        {
            Assert.True(await ServedAsync(distinct[i], $"client {i}"), $"client {i} was refused");
        }

        // 51 at once from one client address: the 51st is told, then closed with a FIN; the others are served.
        var same = new List<TestClient>();
        for (var i = 0; i < 50; i++)
        {
            var client = await TestClient.ConnectAsync(server.EndPoints[0]);
            await client.SendAsync(Header(2, "203.0.113.9", 2000 + i));
            Assert.True(await ServedAsync(client, $"same {i}"));
            same.Add(client);
        }

        await using (var refused = await TestClient.ConnectAsync(server.EndPoints[0]))
        {
            await refused.SendAsync(Header(2, "203.0.113.9", 3000));
            Assert.Equal(Refusal, System.Text.Encoding.ASCII.GetString(await refused.ReadToEndAsync()));
        }

        Assert.Equal(1, server.RefusedConnections);
        foreach (var client in distinct.Concat(same))
        {
            await CloseAsync(client);
        }

        await AssertPlacesGivenBackAsync(server);
    }

    [SkippableFact]
    public async Task Behind_haproxy_with_send_proxy_v1_and_v2_every_healthy_client_is_served()
    {
        Skip.IfNot(File.Exists("/usr/sbin/haproxy"), "haproxy is not installed on this machine (.ci/run installs it)");
        await using var server = await CreateAsync(perAddress: 5);
        var gateway = (IPEndPoint)server.EndPoints[0];
        var (v1Port, v2Port) = (TestPorts.Free(), TestPorts.Free());
        var config = Path.Combine(Path.GetTempPath(), $"haproxy-{Guid.NewGuid():N}.cfg");
        await File.WriteAllTextAsync(config, $"""
            global
              maxconn 4096
            defaults
              mode tcp
              timeout connect 5s
              timeout client 60s
              timeout server 60s
            frontend v1
              bind 127.0.0.1:{v1Port}
              default_backend gateway-v1
            backend gateway-v1
              server gateway {gateway} send-proxy
            frontend v2
              bind 127.0.0.1:{v2Port}
              default_backend gateway-v2
            backend gateway-v2
              server gateway {gateway} send-proxy-v2

            """);
        using var haproxy = Process.Start(new ProcessStartInfo("/usr/sbin/haproxy", ["-db", "-f", config]) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        try
        {
            var v1 = new IPEndPoint(IPAddress.Loopback, v1Port);
            var v2 = new IPEndPoint(IPAddress.Loopback, v2Port);
            await WaitForListenerAsync(v1, haproxy);
            await WaitForListenerAsync(v2, haproxy);

            // 2,000 sequential connections from one client address, alternating v1 and v2: every one served.
            for (var i = 0; i < 2000; i++)
            {
                var client = await TestClient.ConnectFromAsync(i % 2 == 0 ? v1 : v2, IPAddress.Parse("127.0.0.2"));
                Assert.True(await ServedAsync(client, $"hello {i}"), $"connection {i} was refused");
                await CloseAsync(client);
            }

            // 60 concurrent clients from 60 addresses with a limit of 50 per address: every one served.
            var clients = new List<TestClient>();
            for (var i = 0; i < 60; i++)
            {
                clients.Add(await TestClient.ConnectFromAsync(i % 2 == 0 ? v1 : v2, IPAddress.Parse($"127.0.1.{i + 1}")));
            }

            for (var i = 0; i < 60; i++)
            {
                Assert.True(await ServedAsync(clients[i], $"client {i}"), $"client {i} was refused");
            }

            // The sixth at once from one address is refused, and told so; the five are served.
            var five = new List<TestClient>();
            for (var i = 0; i < 5; i++)
            {
                five.Add(await TestClient.ConnectFromAsync(v2, IPAddress.Parse("127.0.0.3")));
                Assert.True(await ServedAsync(five[i], $"five {i}"));
            }

            await using (var sixth = await TestClient.ConnectFromAsync(v1, IPAddress.Parse("127.0.0.3")))
            {
                Assert.Equal(Refusal, System.Text.Encoding.ASCII.GetString(await sixth.ReadToEndAsync()));
            }

            Assert.Equal(1, server.RefusedConnections);
            foreach (var client in clients.Concat(five))
            {
                await CloseAsync(client);
            }

            await AssertPlacesGivenBackAsync(server);
        }
        finally
        {
            haproxy.Kill();
            File.Delete(config);
        }
    }

    private static async Task WaitForListenerAsync(IPEndPoint endPoint, Process haproxy)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            if (haproxy.HasExited)
            {
                await haproxy.WaitForExitAsync();
                Assert.Fail($"haproxy exited with {haproxy.ExitCode}: {await haproxy.StandardError.ReadToEndAsync()}");
            }

            try
            {
                using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                await probe.ConnectAsync(endPoint);
                return;
            }
            catch (SocketException) when (deadline.Elapsed < TestTimeouts.Default)
            {
                await Task.Delay(50);
            }
        }
    }
}
