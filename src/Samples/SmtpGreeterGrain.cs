using System.Text;

namespace OrleansProtocol.Samples;

/// <summary>
/// The opening of an SMTP session and its STARTTLS (RFC 3207), enough for <c>openssl s_client -starttls smtp</c>: a
/// greeting, EHLO offering STARTTLS until TLS is on, STARTTLS answering 220 and upgrading the connection
/// (<see cref="ProtocolTransport.StartTls"/>), NOOP, QUIT. It delivers no mail. Served on 127.0.0.1:2525 by the gateway
/// host, with a self-signed development certificate unless one is configured.
/// </summary>
public sealed class SmtpGreeterGrain : ProtocolGrain
{
    /// <inheritdoc />
    protected override Task ConnectionMade(ProtocolTransport transport)
    {
        transport.Write("220 orleansprotocol ESMTP ready\r\n"u8);
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    protected override Task FrameReceived(ReadOnlyMemory<byte> frame)
    {
        var line = Encoding.ASCII.GetString(frame.Span);
        var secure = Transport.Connection.Tls is not null;
        switch (line.Split(' ')[0].ToUpperInvariant())
        {
            case "EHLO" or "HELO":
                Reply($"250-orleansprotocol greets {line[4..].Trim()}" + (secure ? "" : "\r\n250-STARTTLS") + "\r\n250 8BITMIME");
                break;
            case "STARTTLS" when secure:
                Reply("503 5.5.1 TLS already active");
                break;
            case "STARTTLS":
                Reply("220 2.0.0 Ready to start TLS");
                Transport.StartTls();
                break;
            case "NOOP":
                Reply(secure ? $"250 2.0.0 OK, over {Transport.GetExtraInfo(ExtraInfoKeys.SslProtocol)}" : "250 2.0.0 OK");
                break;
            case "QUIT":
                Reply("221 2.0.0 Bye");
                Transport.Close();
                break;
            default:
                Reply("502 5.5.2 Not implemented here: this sample only greets and starts TLS");
                break;
        }

        return Task.CompletedTask;
    }

    private void Reply(string text) => Transport.Write(Encoding.ASCII.GetBytes(text + "\r\n"));
}
