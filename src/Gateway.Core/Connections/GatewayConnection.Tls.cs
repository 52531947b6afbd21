using System.IO.Pipelines;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
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

    // TLS at accept: a listener certificate not kept for STARTTLS, or an outbound connection's client TLS.
    private bool UsesTls => (_tlsServer is { } server && !server.Options.StartTls) || _tlsClient is not null;

    /// <summary>A STARTTLS in progress: the writer says when the plaintext before it is sent, the pump when TLS is up.</summary>
    private sealed class StartTlsUpgrade(ClientTls? client)
    {
        public ClientTls? Client => client;

        public TaskCompletionSource AtGate { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource GateOpen { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource Flushed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private StartTlsUpgrade? _startTls;

    /// <returns>False when the handshake failed or timed out; the connection is then dropped without a grain.</returns>
    private async Task<bool> HandshakeAsync()
    {
        var handshakeTimeout = _tlsServer is { } server ? server.Options.HandshakeTimeout : _tlsClientTimeout;
        using var timeout = DeadlineFromAccept(handshakeTimeout);
        if (await AuthenticateAsync(_tlsClient, timeout, handshakeTimeout) is { } failure)
        {
            LogRejection("tls_handshake", failure, GatewayLog.TlsHandshakeFailed);
            lock (_lock)
            {
                _grainLost = true;
                AbortLocked(ConnectionCloseReason.ProtocolError, failure);
                _handshakeError = failure;
            }

            WakeWriter();
            return false;
        }

        return true;
    }

    /// <summary>
    /// STARTTLS, on the pump: with the writer held before the go-ahead, drops what the peer has sent so far (it must
    /// wait for the go-ahead; bytes sent early would be plaintext taken for protected data), lets the go-ahead out, and
    /// once it is sent handshakes on what comes next, lets the writer go on encrypted and tells the grain.
    /// </summary>
    /// <returns>False when the connection is aborted (the handshake failed or timed out).</returns>
    private async Task<bool> UpgradeToTlsAsync(StartTlsUpgrade upgrade, long undelivered)
    {
        await upgrade.AtGate.Task;
        if (_input.TryRead(out var early))
        {
            undelivered += early.Buffer.Length;
            _input.AdvanceTo(early.Buffer.End);
        }

        upgrade.GateOpen.TrySetResult();
        await upgrade.Flushed.Task;
        lock (_lock)
        {
            if (_aborted)
            {
                return false;
            }
        }

        if (undelivered > 0)
        {
            _logger.LogWarning("Connection {ConnectionId}: dropped {Bytes} bytes the peer sent before the TLS handshake it was asked to start.", Id, undelivered);
        }

        string? failure;
        // The listener's handshake timeout; outbound, the one it was opened with when it had TLS from the start, or 10 s.
        var handshakeTimeout = _tlsServer?.Options.HandshakeTimeout
            ?? (_tlsClientTimeout > TimeSpan.Zero ? _tlsClientTimeout : new TlsOptions().HandshakeTimeout);
        if (upgrade.Client is null && _tlsServer is null)
        {
            failure = "The protocol started TLS, but the listener has no certificate for it (Tls.CertificatePath with Tls.StartTls).";
        }
        else
        {
            using var timeout = new CancellationTokenSource(handshakeTimeout, _time);
            var client = upgrade.Client is { } c
                ? new SslClientAuthenticationOptions
                {
                    TargetHost = c.ServerName,
                    RemoteCertificateValidationCallback = c.AllowUntrustedCertificate ? (_, _, _, _) => true : null,
                }
                : null;
            failure = await AuthenticateAsync(client, timeout, handshakeTimeout);
        }

        if (failure is not null)
        {
            LogRejection("tls_handshake", failure, GatewayLog.TlsHandshakeFailed);
            Abort(ConnectionCloseReason.ProtocolError, failure);
            upgrade.Done.TrySetResult();
            return false;
        }

        GatewayLog.TlsStarted(_logger, Id, Info.Tls!.Protocol, Info.Tls.Cipher);
        upgrade.Done.TrySetResult();
        await ApplyReplyAsync(await CallGrainAsync(this, static (grain, c) => grain.TlsStarted(c.Info.Tls!, c.ProtocolBytesSent)));
        return true;
    }

    /// <summary>Runs the handshake (the server side with the listener's certificate unless <paramref name="client"/> is given) and adopts the TLS stream.</summary>
    /// <returns>Why it failed, or null.</returns>
    private async Task<string?> AuthenticateAsync(SslClientAuthenticationOptions? client, CancellationTokenSource timeout, TimeSpan handshakeTimeout)
    {
        var ssl = new SslStream(new DuplexPipeStream(_context.Transport), leaveInnerStreamOpen: false);
        try
        {
            if (client is null && _tlsServer is var (certificate, options))
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
            return timeout.IsCancellationRequested
                ? $"The TLS handshake did not complete within {handshakeTimeout}."
                : $"The TLS handshake failed: {ex.Message}";
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
        return null;
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
