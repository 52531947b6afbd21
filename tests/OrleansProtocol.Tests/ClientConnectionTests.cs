using System.Net;
using System.Net.Sockets;
using OrleansProtocol.Tests.Infrastructure;
using OrleansProtocol.Tests.TestGrains;

namespace OrleansProtocol.Tests;

/// <summary>Outbound connections (asyncio create_connection) served by protocol grains.</summary>
[Collection(GatewayCollection.Name)]
public sealed class ClientConnectionTests(GatewayClusterFixture fixture)
{
    private async Task ExchangeAsync(Func<string, int, Task<ConnectionInfo>> open)
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;

        var opening = open("127.0.0.1", port);
        using var peer = await listener.AcceptTcpClientAsync().WaitAsync(TestTimeouts.Default);
        var info = await opening.WaitAsync(TestTimeouts.Default);
        Assert.Equal(port, info.RemoteEndPoint!.Port);

        var stream = peer.GetStream();
        Assert.Equal("hello from grain", await stream.ReadLineAsync());
        await stream.WriteAsync("ping\n"u8.ToArray());
        Assert.Equal("pong: ping", await stream.ReadLineAsync());

        // The peer closes; the grain sees EOF, closes its side, and gets ConnectionLost once.
        peer.Client.Shutdown(SocketShutdown.Send);
        Assert.Equal(0, await stream.ReadAsync(new byte[1]).AsTask().WaitAsync(TestTimeouts.Default));
        var record = await fixture.Recorder.WaitAsync(() => fixture.Recorder.All.FirstOrDefault(r => r.Connection.ConnectionId == info.ConnectionId && r.Count("CL") == 1));
        ConnectionLifecycleTests.AssertCallOrder(record);
        Assert.Null(record.LostException);
    }

    [Fact]
    public Task A_grain_opens_a_connection_to_a_plain_TCP_server_and_exchanges_data_both_ways() =>
        ExchangeAsync((host, port) => fixture.Grains.GetGrain<IClientStarterGrain>(Guid.NewGuid()).Open(host, port));

    [Fact]
    public Task An_external_Orleans_client_opens_a_connection_the_same_way() =>
        ExchangeAsync((host, port) => fixture.Cluster.Client.CreateConnectionAsync<ClientProtocolGrain>(host, port));

    [Fact]
    public async Task A_grain_opens_a_TLS_connection_and_exchanges_data_and_an_untrusted_certificate_is_refused_clearly()
    {
        using var certificate = System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadPkcs12FromFile(fixture.CertificatePath, null);
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var starter = fixture.Grains.GetGrain<IClientStarterGrain>(Guid.NewGuid());

        var opening = starter.OpenTls("127.0.0.1", port, allowUntrusted: true);
        using (var peer = await listener.AcceptTcpClientAsync().WaitAsync(TestTimeouts.Default))
        await using (var tls = new System.Net.Security.SslStream(peer.GetStream()))
        {
            await tls.AuthenticateAsServerAsync(certificate).WaitAsync(TestTimeouts.Default);
            var info = await opening.WaitAsync(TestTimeouts.Default);
            Assert.NotNull(info.Tls);
            Assert.Equal("hello from grain", await tls.ReadLineAsync());
            await tls.WriteAsync("ping\n"u8.ToArray());
            Assert.Equal("pong: ping", await tls.ReadLineAsync());
        }

        // The same self-signed certificate, validated by the operating system: refused, with the reason.
        var activationsBefore = ClientProtocolGrain.Activations.Count;
        var refusing = starter.OpenTls("127.0.0.1", port, allowUntrusted: false);
        using (var peer = await listener.AcceptTcpClientAsync().WaitAsync(TestTimeouts.Default))
        await using (var tls = new System.Net.Security.SslStream(peer.GetStream()))
        {
            // With TLS 1.3 the server may finish its side before the client rejects the certificate.
            try
            {
                await tls.AuthenticateAsServerAsync(certificate).WaitAsync(TestTimeouts.Default);
            }
            catch (Exception ex) when (ex is System.Security.Authentication.AuthenticationException or IOException)
            {
            }
        }

        var error = await Assert.ThrowsAsync<ProtocolConnectException>(() => refusing.WaitAsync(TestTimeouts.Default));
        Assert.Contains("TLS handshake failed", error.Message);
        Assert.Equal(activationsBefore, ClientProtocolGrain.Activations.Count);
    }

    [Fact]
    public async Task Connecting_to_a_closed_port_fails_fast_with_a_clear_exception_and_leaves_no_activation()
    {
        var closedPort = TestPorts.Free();
        var activationsBefore = ClientProtocolGrain.Activations.Count;
        // Refused by the kernel, not timed out: the connect fails on the refusal itself.
        var error = await Assert.ThrowsAsync<ProtocolConnectException>(() =>
            fixture.Grains.GetGrain<IClientStarterGrain>(Guid.NewGuid()).Open("127.0.0.1", closedPort));
        Assert.Equal(SocketError.ConnectionRefused, error.SocketError);
        Assert.Contains($"127.0.0.1:{closedPort}", error.Message);
        Assert.Equal(activationsBefore, ClientProtocolGrain.Activations.Count);
        Assert.Equal(0, fixture.Gateway.OutboundConnectionCount);
    }
}
