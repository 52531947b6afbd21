using System.Text;
using Orleans.Concurrency;

namespace OrleansProtocol.Tests.TestGrains;

/// <summary>
/// Enough of SMTP's greeting and STARTTLS (RFC 3207) for <c>openssl s_client -starttls smtp</c>: EHLO lists STARTTLS
/// until TLS is on, STARTTLS answers 220 and upgrades. HISTORY lists the commands it handled, so a test can see that
/// nothing sent before the handshake was taken.
/// </summary>
public sealed class SmtpGrain : ProtocolGrain
{
    private readonly List<string> _history = [];

    protected override Task ConnectionMade(ProtocolTransport transport)
    {
        transport.Write("220 orleansprotocol ESMTP ready\r\n"u8);
        return Task.CompletedTask;
    }

    protected override Task FrameReceived(ReadOnlyMemory<byte> frame)
    {
        var line = Encoding.ASCII.GetString(frame.Span);
        var verb = line.Split(' ')[0].ToUpperInvariant();
        _history.Add(verb);
        var tls = Transport.GetExtraInfo(ExtraInfoKeys.SslProtocol) as string;
        switch (verb)
        {
            case "EHLO":
                Reply($"250-orleansprotocol greets {line[4..].Trim()}\r\n" + (tls is null ? "250-STARTTLS\r\n" : "") + "250 8BITMIME");
                break;
            case "STARTTLS" when tls is null:
                Reply("220 2.0.0 Ready to start TLS");
                Transport.StartTls();
                break;
            case "STARTTLS":
                Reply("503 5.5.1 TLS already active");
                break;
            case "HISTORY":
                Reply($"250 {string.Join(',', _history)} tls={tls ?? "none"}");
                break;
            case "QUIT":
                Reply("221 2.0.0 Bye");
                Transport.Close();
                break;
            default:
                Reply("250 2.0.0 OK");
                break;
        }

        return Task.CompletedTask;
    }

    protected override Task TlsStarted()
    {
        // RFC 3207: what the client said before TLS is forgotten.
        _history.Add("TLS");
        return Task.CompletedTask;
    }

    private void Reply(string text) => Transport.Write(Encoding.ASCII.GetBytes(text + "\r\n"));
}

/// <summary>The client side: on the greeting asks for STARTTLS, upgrades as a TLS client, then asks HISTORY over TLS.</summary>
[Alias("OrleansProtocol.Tests.TestGrains.ISmtpClientGrain")]
public interface ISmtpClientGrain : IGrainWithStringKey
{
    [AlwaysInterleave]
    [Alias("Replies")]
    Task<string[]> Replies();
}

public sealed class SmtpClientGrain : ProtocolGrain, ISmtpClientGrain
{
    private readonly List<string> _replies = [];

    public Task<string[]> Replies() => Task.FromResult(_replies.ToArray());

    protected override Task FrameReceived(ReadOnlyMemory<byte> frame)
    {
        var line = Encoding.ASCII.GetString(frame.Span);
        _replies.Add(line);
        if (line.StartsWith("220 orleansprotocol", StringComparison.Ordinal))
        {
            Transport.Write("STARTTLS\r\n"u8);
        }
        else if (line.StartsWith("220 2.0.0", StringComparison.Ordinal))
        {
            Transport.StartTls(new ClientTls("localhost") { AllowUntrustedCertificate = true });
        }

        return Task.CompletedTask;
    }

    protected override Task TlsStarted()
    {
        _replies.Add($"tls {Transport.GetExtraInfo(ExtraInfoKeys.SslProtocol)}");
        Transport.Write("HISTORY\r\n"u8);
        return Task.CompletedTask;
    }
}
