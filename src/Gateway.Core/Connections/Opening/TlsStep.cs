using System.IO.Pipelines;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;

namespace OrleansProtocol.Gateway.Connections.Opening;

/// <summary>
/// The TLS opening step: a handshake over the raw bytes of a connection, server side with the listener's certificate
/// or client side for an outbound connection; on success the connection swaps in a transport over the TLS stream
/// (<see cref="ConnectionTransport.WithTls"/>). At accept it runs before the grain exists; STARTTLS runs the same
/// step mid-stream (<see cref="StartTlsUpgrade"/>).
/// </summary>
internal static class TlsStep
{
    /// <summary>Runs the handshake: the server side with <paramref name="server"/> unless <paramref name="client"/> is given.</summary>
    /// <returns>The stream and what the handshake agreed, or why it failed.</returns>
    public static async Task<(SslStream? Stream, TlsInfo? Info, string? Failure)> AuthenticateAsync(
        IDuplexPipe raw,
        (X509Certificate2 Certificate, TlsOptions Options)? server,
        SslClientAuthenticationOptions? client,
        CancellationTokenSource timeout,
        TimeSpan handshakeTimeout)
    {
        var ssl = new SslStream(new DuplexPipeStream(raw), leaveInnerStreamOpen: false);
        try
        {
            if (client is null && server is var (certificate, options))
            {
                await ssl.AuthenticateAsServerAsync(
                    new SslServerAuthenticationOptions
                    {
                        ServerCertificate = certificate,
                        ClientCertificateRequired = options.ClientCertificateMode != ClientCertificateMode.NoCertificate,
                        EnabledSslProtocols = options.SslProtocols,

                        // Which client certificates to trust is the protocol's decision: it sees "peercert".
                        RemoteCertificateValidationCallback = (_, cert, _, _) =>
                            cert is not null || options.ClientCertificateMode != ClientCertificateMode.RequireCertificate,
                    },
                    timeout.Token);
            }
            else
            {
                await ssl.AuthenticateAsClientAsync(client!, timeout.Token);
            }
        }
        catch (Exception ex)
        {
            await ssl.DisposeAsync();
            return (null, null, timeout.IsCancellationRequested
                ? $"The TLS handshake did not complete within {handshakeTimeout}."
                : $"The TLS handshake failed: {ex.Message}");
        }

        var info = new TlsInfo(
            ssl.SslProtocol switch
            {
                SslProtocols.Tls13 => "TLSv1.3",
                SslProtocols.Tls12 => "TLSv1.2",
                var other => other.ToString(),
            },
            ssl.NegotiatedCipherSuite.ToString(),
            ssl.RemoteCertificate?.GetRawCertData());
        return (ssl, info, null);
    }

    /// <summary>The client side's settings for a STARTTLS an outbound connection's protocol asked for.</summary>
    public static SslClientAuthenticationOptions ClientOptions(ClientTls client) => new()
    {
        TargetHost = client.ServerName,
        RemoteCertificateValidationCallback = client.AllowUntrustedCertificate ? (_, _, _, _) => true : null,
    };
}

/// <summary>
/// A STARTTLS in progress: the writer says when it reached the go-ahead's gate and when the plaintext before the
/// upgrade is sent; the pump opens the gate once it has dropped what the peer sent early, and says when TLS is up.
/// </summary>
internal sealed class StartTlsUpgrade(ClientTls? client)
{
    public ClientTls? Client => client;

    public TaskCompletionSource AtGate { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public TaskCompletionSource GateOpen { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public TaskCompletionSource Flushed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The connection was aborted: neither side waits for the other any more.</summary>
    public void Release()
    {
        AtGate.TrySetResult();
        GateOpen.TrySetResult();
        Flushed.TrySetResult();
        Done.TrySetResult();
    }
}
