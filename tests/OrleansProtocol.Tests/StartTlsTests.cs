using System.Diagnostics;
using System.Net.Security;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Time.Testing;
using OrleansProtocol.Gateway;
using OrleansProtocol.Tests.Infrastructure;
using OrleansProtocol.Tests.TestGrains;

namespace OrleansProtocol.Tests;

/// <summary>STARTTLS (asyncio's start_tls): a plaintext line protocol upgrades its live connection to TLS.</summary>
[Collection(GatewayCollection.Name)]
public sealed class StartTlsTests(GatewayClusterFixture fixture)
{
    private Task<ProtocolServer> CreateAsync(TimeProvider? time = null) =>
        fixture.Gateway.CreateServerOnClockAsync<SmtpGrain>($"smtp-{Guid.NewGuid():N}", o =>
        {
            o.Port = 0;
            o.Framing = new FramingOptions { Kind = FramingKind.Line };
            o.Tls.CertificatePath = fixture.CertificatePath;
            o.Tls.StartTls = true;
        }, time);

    [SkippableFact]
    public async Task Openssl_s_client_starttls_smtp_upgrades_and_talks_over_TLS()
    {
        Skip.IfNot(File.Exists("/usr/bin/openssl"), "openssl is not installed on this machine (.ci/run installs it)");
        await using var server = await CreateAsync();
        var port = ((System.Net.IPEndPoint)server.EndPoints[0]).Port;

        // s_client does the plaintext EHLO/STARTTLS dance itself, then sends our lines over TLS.
        using var openssl = Process.Start(new ProcessStartInfo("openssl",
            ["s_client", "-starttls", "smtp", "-connect", $"127.0.0.1:{port}", "-crlf", "-quiet", "-ign_eof"])
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        var output = openssl.StandardOutput.ReadToEndAsync();
        var errors = openssl.StandardError.ReadToEndAsync();
        await openssl.StandardInput.WriteAsync("EHLO after\nHISTORY\nQUIT\n");
        openssl.StandardInput.Close();
        await openssl.WaitForExitAsync().WaitAsync(TestTimeouts.Default);
        var text = await output;
        Assert.True(text.Contains("221 2.0.0 Bye", StringComparison.Ordinal), text + await errors);

        // Over TLS: no STARTTLS offered any more; the grain saw the plaintext EHLO and STARTTLS, then TLS, then ours.
        Assert.Contains("250-orleansprotocol greets after", text);
        Assert.DoesNotContain("250-STARTTLS", text);
        Assert.Matches(@"250 EHLO,STARTTLS,TLS,EHLO,HISTORY tls=TLSv1\.[23]", text);
    }

    [Fact]
    public async Task Commands_sent_before_the_handshake_are_never_taken_and_the_session_goes_on_encrypted()
    {
        await using var server = await CreateAsync();
        await using var client = await TestClient.ConnectAsync(server.EndPoints[0]);
        Assert.Equal("220 orleansprotocol ESMTP ready", (await client.ReadLineAsync())!.TrimEnd('\r'));

        // STARTTLS with a command injected behind it in the same write (CVE-2011-0411's attack).
        await client.SendAsync("STARTTLS\r\nRCPT TO:<injected@example.com>\r\n");
        Assert.Equal("220 2.0.0 Ready to start TLS", (await client.ReadLineAsync())!.TrimEnd('\r'));

        using var tls = new SslStream(new NetworkStream(client.Socket, ownsSocket: false), leaveInnerStreamOpen: true, (_, _, _, _) => true);
        await tls.AuthenticateAsClientAsync("localhost").WaitAsync(TestTimeouts.Default);
        await tls.WriteAsync("HISTORY\r\n"u8.ToArray());
        var reply = new byte[256];
        var read = 0;
        while (!reply.AsSpan(0, read).EndsWith("\r\n"u8))
        {
            read += await tls.ReadAsync(reply.AsMemory(read)).AsTask().WaitAsync(TestTimeouts.Default);
        }

        // The injected RCPT never reached the protocol.
        Assert.Matches(@"^250 STARTTLS,TLS,HISTORY tls=TLSv1\.[23]\r\n$", Encoding.ASCII.GetString(reply, 0, read));
        Assert.Contains(fixture.Logs.Entries, e => e.Message.Contains("bytes the peer sent before the TLS handshake", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_client_that_never_handshakes_is_closed_at_the_handshake_timeout_and_one_inside_it_is_served()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var server = await CreateAsync(time);
        await using var silent = await TestClient.ConnectAsync(server.EndPoints[0]);
        Assert.Equal("220 orleansprotocol ESMTP ready", (await silent.ReadLineAsync())!.TrimEnd('\r'));
        await silent.SendAsync("STARTTLS\r\n");
        Assert.Equal("220 2.0.0 Ready to start TLS", (await silent.ReadLineAsync())!.TrimEnd('\r'));

        // 9 s of the 10 s pass: a client that now handshakes is served.
        await using var slow = await TestClient.ConnectAsync(server.EndPoints[0]);
        Assert.Equal("220 orleansprotocol ESMTP ready", (await slow.ReadLineAsync())!.TrimEnd('\r'));
        await slow.SendAsync("STARTTLS\r\n");
        Assert.Equal("220 2.0.0 Ready to start TLS", (await slow.ReadLineAsync())!.TrimEnd('\r'));
        time.Advance(TimeSpan.FromSeconds(9), server);
        using (var tls = new SslStream(new NetworkStream(slow.Socket, ownsSocket: false), leaveInnerStreamOpen: true, (_, _, _, _) => true))
        {
            await tls.AuthenticateAsClientAsync("localhost").WaitAsync(TestTimeouts.Default);
        }

        // The silent one is cut once the timeout has passed (a second at a time: a deadline armed meanwhile is due later).
        await time.AdvanceUntilAsync(server, silent.AssertDroppedAsync());
    }

    [Fact]
    public async Task An_outbound_connection_upgrades_as_the_TLS_client()
    {
        await using var server = await CreateAsync();
        var port = ((System.Net.IPEndPoint)server.EndPoints[0]).Port;
        var info = await fixture.Grains.CreateConnectionAsync<SmtpClientGrain>("127.0.0.1", port, r => r with { Framing = new FrameFormat { Kind = FramingKind.Line } });
        var client = fixture.Grains.GetGrain<ISmtpClientGrain>(GrainId.Create(info.GrainType!, info.ConnectionId));
        string[] replies = [];
        await Poll.UntilAsync(async () => (replies = await client.Replies()).Length >= 4, () => $"replies: [{string.Join(" | ", replies)}]");
        Assert.Equal("220 orleansprotocol ESMTP ready", replies[0]);
        Assert.Equal("220 2.0.0 Ready to start TLS", replies[1]);
        Assert.Matches(@"^tls TLSv1\.[23]$", replies[2]);
        Assert.Matches(@"^250 STARTTLS,TLS,HISTORY tls=TLSv1\.[23]$", replies[3]);
    }
}
