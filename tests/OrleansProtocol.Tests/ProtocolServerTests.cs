using System.Net;
using System.Net.Sockets;
using System.Text;
using OrleansProtocol.Gateway;
using OrleansProtocol.Samples;
using OrleansProtocol.Tests.Infrastructure;
using OrleansProtocol.Tests.TestGrains;
using OrleansProtocol.Wire;

namespace OrleansProtocol.Tests;

/// <summary>ProtocolServer, asyncio's Server: servers created at run time from silo code.</summary>
[Collection(GatewayCollection.Name)]
public sealed class ProtocolServerTests(GatewayClusterFixture fixture)
{
    private static string UniqueName(string prefix) => $"{prefix}-{Guid.NewGuid():N}";

    private Task<ProtocolServer> CreateAsync<TGrain>(Action<ProtocolListenerOptions>? configure = null)
        where TGrain : IProtocolGrain =>
        fixture.Gateway.CreateServerAsync<TGrain>(UniqueName(typeof(TGrain).Name), o =>
        {
            o.Port = 0;
            configure?.Invoke(o);
        });

    private async Task<List<(TestClient Client, ConnectionRecord Record)>> ConnectManyAsync(ProtocolServer server, int count)
    {
        var clients = new List<(TestClient Client, ConnectionRecord Record)>();
        for (var i = 0; i < count; i++)
        {
            var client = await TestClient.ConnectAsync(server.EndPoints[0]);
            clients.Add((client, await fixture.Recorder.ForClientAsync(client.LocalEndPoint)));
        }

        return clients;
    }

    [Fact]
    public async Task A_server_bound_to_port_0_reports_its_real_port_and_two_servers_serve_different_protocols()
    {
        await using var echo = await CreateAsync<EchoGrain>();
        await using var bye = await CreateAsync<ByeGrain>();
        var echoEndPoint = Assert.IsType<IPEndPoint>(Assert.Single(echo.EndPoints));
        var byeEndPoint = Assert.IsType<IPEndPoint>(Assert.Single(bye.EndPoints));
        Assert.NotEqual(0, echoEndPoint.Port);
        Assert.NotEqual(echoEndPoint.Port, byeEndPoint.Port);
        Assert.True(echo.IsServing);
        Assert.Contains(echo, fixture.Gateway.Servers);

        await using (var client = await TestClient.ConnectAsync(echoEndPoint))
        {
            await client.SendAsync("ping\n");
            Assert.Equal("ping", await client.ReadLineAsync());
        }

        await using (var client = await TestClient.ConnectAsync(byeEndPoint))
        {
            Assert.Equal("bye", Encoding.ASCII.GetString(await client.ReadToEndAsync()));
        }
    }

    [Fact]
    public async Task A_server_binds_every_host_it_is_given()
    {
        await using var server = await CreateAsync<EchoGrain>(o => o.Host = "127.0.0.1, 127.0.0.2");
        Assert.Equal(2, server.EndPoints.Count);
        foreach (var endPoint in server.EndPoints)
        {
            await using var client = await TestClient.ConnectAsync(endPoint);
            await client.SendAsync("x\n");
            Assert.Equal("x", await client.ReadLineAsync());
        }
    }

    [Fact]
    public async Task Close_stops_accepting_while_existing_connections_work_and_WaitClosed_waits_for_the_last_one()
    {
        var server = await CreateAsync<ScriptGrain>();
        var endPoint = server.EndPoints[0];
        var client = await TestClient.ConnectAsync(endPoint);
        var record = await fixture.Recorder.ForClientAsync(client.LocalEndPoint);

        server.Close();
        Assert.False(server.IsServing);
        Assert.Empty(server.EndPoints);
        var waitClosed = server.WaitClosed();

        // Existing connection goes on.
        await client.SendAsync("echo still here\n");
        Assert.Equal("still here", await client.ReadLineAsync());
        Assert.False(waitClosed.IsCompleted);

        // Nobody new gets in: Close closes the listening sockets before it returns.
        await Assert.ThrowsAnyAsync<SocketException>(() => TestClient.ConnectAsync(endPoint));

        // WaitClosed returns once the last connection has ended (and its grain was told).
        client.ShutdownSend();
        await client.ReadToEndAsync();
        await waitClosed.WaitAsync(TestTimeouts.Default);
        Assert.Equal(1, record.Count("CL"));
        Assert.Equal(0, server.ConnectionCount);
        await client.DisposeAsync();
    }

    [Fact]
    public async Task CloseClients_flushes_and_closes_every_connection_with_ConnectionLost_once()
    {
        await using var server = await CreateAsync<ScriptGrain>();
        var clients = await ConnectManyAsync(server, 5);

        // Written from outside any callback just before: must arrive before the EOF.
        foreach (var (_, record) in clients)
        {
            await fixture.ScriptGrain(record).WriteNow("last words\n");
        }

        server.Close();
        server.CloseClients();
        foreach (var (client, record) in clients)
        {
            Assert.Equal("last words\n", Encoding.UTF8.GetString(await client.ReadToEndAsync()));
            await fixture.Recorder.WaitUntilAsync(() => record.Count("CL") == 1);
            Assert.Null(record.LostException);
            await client.DisposeAsync();
        }

        await server.WaitClosed().WaitAsync(TestTimeouts.Default);
    }

    [Fact]
    public async Task AbortClients_resets_every_connection_with_ConnectionLost_once()
    {
        await using var server = await CreateAsync<ScriptGrain>();
        var clients = await ConnectManyAsync(server, 5);

        server.Close();
        server.AbortClients();
        foreach (var (client, record) in clients)
        {
            var error = await Assert.ThrowsAsync<SocketException>(() => client.ReadToEndAsync());
            Assert.Equal(SocketError.ConnectionReset, error.SocketErrorCode);
            await fixture.Recorder.WaitUntilAsync(() => record.Count("CL") == 1);
            Assert.Equal(ConnectionCloseReason.LocalAbort, record.LostReason);
            await client.DisposeAsync();
        }

        await server.WaitClosed().WaitAsync(TestTimeouts.Default);
    }

    [Fact]
    public async Task ServeForever_returns_when_the_server_is_closed_and_throws_when_cancelled()
    {
        var server = await CreateAsync<EchoGrain>();
        var serving = server.ServeForever();
        await Assert.ThrowsAsync<InvalidOperationException>(() => server.ServeForever());
        Assert.False(serving.IsCompleted);
        server.Close();
        await serving.WaitAsync(TestTimeouts.Default);
        await Assert.ThrowsAsync<InvalidOperationException>(() => server.ServeForever());

        var other = await CreateAsync<EchoGrain>();
        using var cancellation = new CancellationTokenSource();
        var cancelled = other.ServeForever(cancellation.Token);
        cancellation.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled.WaitAsync(TestTimeouts.Default));
        Assert.False(other.IsServing);
    }

    [Fact]
    public async Task StartServing_on_a_server_created_not_serving_begins_accepting()
    {
        await using var server = await CreateAsync<EchoGrain>(o => o.StartServing = false);
        Assert.False(server.IsServing);
        var endPoint = server.EndPoints[0];

        // Bound and listening: the kernel completes the handshake, but nothing is accepted or served yet.
        await using var client = await TestClient.ConnectAsync(endPoint);
        await client.SendAsync("queued\n");
        var reply = client.ReadLineAsync();
        Assert.Equal(0, server.ConnectionCount);

        server.StartServing();
        server.StartServing();
        Assert.True(server.IsServing);
        Assert.Equal("queued", await reply);
    }

    [Fact]
    public async Task Disposing_a_server_drains_it_and_the_gateway_forgets_it()
    {
        var server = await CreateAsync<ScriptGrain>();
        var client = await TestClient.ConnectAsync(server.EndPoints[0]);
        var record = await fixture.Recorder.ForClientAsync(client.LocalEndPoint);
        await server.DisposeAsync();
        Assert.Empty(await client.ReadToEndAsync());
        Assert.Equal(1, record.Count("CL"));
        Assert.Equal(ConnectionCloseReason.ServerShutdown, Assert.IsType<ConnectionClosedException>(record.LostException).Reason);
        Assert.DoesNotContain(server, fixture.Gateway.Servers);
        await client.DisposeAsync();
    }

    [Fact]
    public async Task Invalid_options_are_refused_with_every_problem_named()
    {
        var error = await Assert.ThrowsAsync<Microsoft.Extensions.Options.OptionsValidationException>(() =>
            fixture.Gateway.CreateServerAsync<EchoGrain>(UniqueName("bad"), o =>
            {
                o.Host = "not-an-address";
                o.Port = 70000;
                o.Backlog = 0;
            }));
        Assert.Equal(3, error.Failures.Count());
        Assert.Contains(error.Failures, f => f.Contains("not-an-address"));

        // The newer settings: a custom framing without its decoder, STARTTLS without a certificate, a Unix socket path
        // too long for the kernel.
        error = await Assert.ThrowsAsync<Microsoft.Extensions.Options.OptionsValidationException>(() =>
            fixture.Gateway.CreateServerAsync<EchoGrain>(UniqueName("bad"), o =>
            {
                o.Framing.Kind = FramingKind.Custom;
                o.Tls.StartTls = true;
                o.UnixSocketPath = "/tmp/" + new string('s', 120);
            }));
        Assert.Equal(3, error.Failures.Count());
        Assert.Contains(error.Failures, f => f.Contains("Custom framing needs a Decoder"));
        Assert.Contains(error.Failures, f => f.Contains("Tls.StartTls needs"));
        Assert.Contains(error.Failures, f => f.Contains("at most 107"));
    }
}
