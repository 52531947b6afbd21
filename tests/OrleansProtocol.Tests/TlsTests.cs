using System.Diagnostics;
using System.Net.Security;
using System.Net.Sockets;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests;

/// <summary>TLS termination at the gateway, with .NET's SslStream and the openssl command-line client.</summary>
[Collection(GatewayCollection.Name)]
public sealed class TlsTests(GatewayClusterFixture fixture)
{
    private async Task<(TcpClient Client, SslStream Tls)> ConnectTlsAsync(string listener)
    {
        var endPoint = (System.Net.IPEndPoint)fixture.EndPoint(listener);
        var client = new TcpClient();
        await client.ConnectAsync(endPoint.Address, endPoint.Port);

        // The test certificate is self-signed.
        var tls = new SslStream(client.GetStream(), false, (_, _, _, _) => true);
        await tls.AuthenticateAsClientAsync("localhost").WaitAsync(TestTimeouts.Default);
        return (client, tls);
    }

    [Fact]
    public async Task An_SslStream_client_completes_the_handshake_and_gets_its_echo()
    {
        var (client, tls) = await ConnectTlsAsync("tls-echo");
        using var disposeClient = client;
        await using var disposeTls = tls;
        await tls.WriteAsync("hello over tls\n"u8.ToArray());
        Assert.Equal("hello over tls", await tls.ReadLineAsync());
    }

    [Fact]
    public async Task GetExtraInfo_reports_the_negotiated_protocol_and_cipher_and_TLS_cannot_write_EOF()
    {
        var (client, tls) = await ConnectTlsAsync("tls-script");
        using var disposeClient = client;
        await using var disposeTls = tls;
        await tls.WriteAsync("tls\n"u8.ToArray());
        var parts = (await tls.ReadLineAsync()).Split(' ');
        Assert.Equal(tls.SslProtocol == System.Security.Authentication.SslProtocols.Tls13 ? "TLSv1.3" : "TLSv1.2", parts[0]);
        Assert.Equal(tls.NegotiatedCipherSuite.ToString(), parts[1]);
        Assert.Equal("False", parts[2]);
        Assert.Equal("True", parts[3]);
    }

    [Fact]
    public async Task The_openssl_command_line_client_completes_a_handshake_and_gets_its_echo()
    {
        var port = ((System.Net.IPEndPoint)fixture.EndPoint("tls-echo")).Port;
        var start = new ProcessStartInfo("openssl", ["s_client", "-connect", $"127.0.0.1:{port}", "-quiet"])
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var openssl = Process.Start(start)!;
        try
        {
            await openssl.StandardInput.WriteAsync("hello openssl\n");
            await openssl.StandardInput.FlushAsync();
            var line = await openssl.StandardOutput.ReadLineAsync().WaitAsync(TestTimeouts.Default);
            Assert.Equal("hello openssl", line);
        }
        finally
        {
            openssl.Kill(entireProcessTree: true);
        }
    }

    [Fact]
    public async Task A_listener_takes_its_certificate_from_PEM_files_too()
    {
        var (certificate, key) = TestCertificates.ExportPem(fixture.CertificatePath);
        try
        {
            await using var server = await fixture.Gateway.CreateServerAsync<OrleansProtocol.Samples.EchoGrain>($"tls-pem-{Guid.NewGuid():N}", o =>
            {
                o.Port = 0;
                o.Tls.CertificatePath = certificate;
                o.Tls.KeyPath = key;
            });
            var endPoint = (System.Net.IPEndPoint)server.EndPoints[0];
            using var client = new TcpClient();
            await client.ConnectAsync(endPoint.Address, endPoint.Port);
            await using var tls = new SslStream(client.GetStream(), false, (_, cert, _, _) => cert is not null);
            await tls.AuthenticateAsClientAsync("localhost").WaitAsync(TestTimeouts.Default);
            await tls.WriteAsync("pem\n"u8.ToArray());
            Assert.Equal("pem", await tls.ReadLineAsync());
        }
        finally
        {
            File.Delete(certificate);
            File.Delete(key);
        }
    }
}
