using System.IO.Pipelines;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using OrleansProtocol.Gateway.Diagnostics;

namespace OrleansProtocol.Gateway.Connections;

/// <summary>
/// TLS termination: the handshake runs before the grain exists, then reads and writes go through an
/// <see cref="SslStream"/> over Kestrel's pipes. TLS cannot half-close, so <c>WriteEof</c> is refused (asyncio) and an
/// <c>EofReceived</c> that asks to stay open closes anyway.
/// </summary>
internal sealed partial class GatewayConnection
{
    private readonly (X509Certificate2 Certificate, TlsOptions Options)? _tlsServer;
    private SslClientAuthenticationOptions? _tlsClient;
    private TimeSpan _tlsClientTimeout;
    private SslStream? _tls;
    private string? _handshakeError;

    /// <summary>Why the TLS handshake failed, if it did.</summary>
    internal string? HandshakeError => _handshakeError;

    /// <summary>Makes this (outbound) connection a TLS client, handshaking before its grain is created.</summary>
    internal void UseClientTls(SslClientAuthenticationOptions options, TimeSpan handshakeTimeout)
    {
        _tlsClient = options;
        _tlsClientTimeout = handshakeTimeout;
    }

    private bool UsesTls => _tlsServer is not null || _tlsClient is not null;

    /// <returns>False when the handshake failed or timed out; the connection is then dropped without a grain.</returns>
    private async Task<bool> HandshakeAsync()
    {
        var ssl = new SslStream(new DuplexPipeStream(_context.Transport), leaveInnerStreamOpen: false);
        var handshakeTimeout = _tlsServer is { } server ? server.Options.HandshakeTimeout : _tlsClientTimeout;
        using var timeout = DeadlineFromAccept(handshakeTimeout);
        try
        {
            if (_tlsServer is var (certificate, options))
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
                await ssl.AuthenticateAsClientAsync(_tlsClient!, timeout.Token);
            }
        }
        catch (Exception ex)
        {
            var detail = timeout.IsCancellationRequested
                ? $"The TLS handshake did not complete within {handshakeTimeout}."
                : $"The TLS handshake failed: {ex.Message}";
            LogRejection("tls_handshake", detail, GatewayLog.TlsHandshakeFailed);
            await ssl.DisposeAsync();
            lock (_lock)
            {
                _grainLost = true;
                AbortLocked(ConnectionCloseReason.ProtocolError, detail);
                _handshakeError = detail;
            }

            WakeWriter();
            return false;
        }

        _tls = ssl;
        _input = PipeReader.Create(ssl, new StreamPipeReaderOptions(leaveOpen: true));
        Info = Info with
        {
            Tls = new TlsInfo(
                ssl.SslProtocol switch
                {
                    SslProtocols.Tls13 => "TLSv1.3",
                    SslProtocols.Tls12 => "TLSv1.2",
                    var other => other.ToString(),
                },
                ssl.NegotiatedCipherSuite.ToString(),
                ssl.RemoteCertificate?.GetRawCertData()),
        };
        return true;
    }

    private async ValueTask SendTlsAsync(ReadOnlyMemory<byte> data)
    {
        await _tls!.WriteAsync(data);
        await _tls.FlushAsync();
    }

    private async ValueTask CloseTlsAsync()
    {
        try
        {
            // close_notify, so the peer can tell a clean close from a truncation.
            await _tls!.ShutdownAsync();
        }
        catch (Exception)
        {
            // The peer may be gone already; the socket closes below either way.
        }
    }
}
