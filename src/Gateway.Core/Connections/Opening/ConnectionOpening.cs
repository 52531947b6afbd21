using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using OrleansProtocol.Gateway.Diagnostics;

namespace OrleansProtocol.Gateway.Connections.Opening;

/// <summary>
/// Runs a connection's opening steps before its grain exists — the PROXY header, then TLS at accept — and STARTTLS,
/// the TLS step mid-stream. Each step reads the connection's input and, for TLS, hands on a transport of its own
/// (<see cref="GatewayConnection.UseTransport"/>); a step that fails drops the connection without a grain.
/// </summary>
internal sealed class ConnectionOpening(GatewayConnection connection)
{
    private readonly ListenerContext _listener = connection.Listener;

    /// <summary>The listener's certificate for a TLS step on the server side, or null.</summary>
    private (X509Certificate2 Certificate, TlsOptions Options)? Server =>
        _listener.Certificate is { } certificate ? (certificate, _listener.Options.Tls) : null;

    /// <returns>False when the connection was dropped (or refused) in one of the steps.</returns>
    public async Task<bool> OpenAsync()
    {
        if (_listener.Proxy is var (trusted, timeout) && !await ReadProxyHeaderAsync(trusted, timeout))
        {
            return false;
        }

        // TLS at accept: a listener certificate not kept for STARTTLS, or an outbound connection's client TLS.
        var server = _listener.Options.Tls.StartTls ? null : Server;
        if (server is null && connection.ClientTls is null)
        {
            return true;
        }

        var handshakeTimeout = server?.Options.HandshakeTimeout ?? connection.ClientTls!.Value.Timeout;
        using var deadline = DeadlineFromAccept(handshakeTimeout);
        if (await AuthenticateAsync(server, connection.ClientTls?.Options, deadline, handshakeTimeout) is { } failure)
        {
            LogRejection("tls_handshake", failure, GatewayLog.TlsHandshakeFailed);
            connection.HandshakeError = failure;
            connection.Abort(ConnectionCloseReason.ProtocolError, failure, grainLost: true);
            return false;
        }

        return true;
    }

    /// <summary>
    /// STARTTLS, on the pump: with the writer held before the go-ahead, drops what the peer has sent so far (it must
    /// wait for the go-ahead; bytes sent early would be plaintext taken for protected data), lets the go-ahead out, and
    /// once it is sent handshakes on what comes next, lets the writer go on encrypted.
    /// </summary>
    /// <returns>False when the connection is aborted (the handshake failed or timed out).</returns>
    public async Task<bool> UpgradeToTlsAsync(StartTlsUpgrade upgrade, long undelivered)
    {
        await upgrade.AtGate.Task;
        var input = connection.Transport.Input;
        if (input.TryRead(out var early))
        {
            undelivered += early.Buffer.Length;
            input.AdvanceTo(early.Buffer.End);
        }

        upgrade.GateOpen.TrySetResult();
        await upgrade.Flushed.Task;
        if (connection.Writer.IsAborted)
        {
            return false;
        }

        if (undelivered > 0)
        {
            _listener.Logger.LogWarning("Connection {ConnectionId}: dropped {Bytes} bytes the peer sent before the TLS handshake it was asked to start.", connection.Id, undelivered);
        }

        // The listener's handshake timeout; outbound, the one it was opened with when it had TLS from the start, or 10 s.
        var handshakeTimeout = Server?.Options.HandshakeTimeout
            ?? (connection.ClientTls is { Timeout: var t } && t > TimeSpan.Zero ? t : new TlsOptions().HandshakeTimeout);
        string? failure;
        if (upgrade.Client is null && Server is null)
        {
            failure = "The protocol started TLS, but the listener has no certificate for it (Tls.CertificatePath with Tls.StartTls).";
        }
        else
        {
            using var timeout = new CancellationTokenSource(handshakeTimeout, _listener.Time);
            failure = await AuthenticateAsync(Server, upgrade.Client is { } client ? TlsStep.ClientOptions(client) : null, timeout, handshakeTimeout);
        }

        if (failure is not null)
        {
            LogRejection("tls_handshake", failure, GatewayLog.TlsHandshakeFailed);
            connection.Abort(ConnectionCloseReason.ProtocolError, failure);
            upgrade.Done.TrySetResult();
            return false;
        }

        GatewayLog.TlsStarted(_listener.Logger, connection.Id, connection.Info.Tls!.Protocol, connection.Info.Tls.Cipher);
        upgrade.Done.TrySetResult();
        return true;
    }

    /// <summary>
    /// Logs a rejection a client can cause at will (a junk connection), sampled per listener and kind
    /// (<see cref="GatewayLog.IsSampled"/>); the metrics keep the exact count.
    /// </summary>
    public void LogRejection(string kind, string detail, Action<ILogger, string, string, long> log)
    {
        var count = OrleansProtocol.Diagnostics.LogSampling.Next(_listener.Name, kind);
        if (GatewayLog.IsSampled(count))
        {
            log(_listener.Logger, connection.Id, detail, count);
        }
        else
        {
            GatewayLog.RejectionNotSampled(_listener.Logger, connection.Id, kind, detail);
        }
    }

    /// <summary>
    /// Reads the PROXY protocol header that a trusted load balancer sends first, and takes the client's addresses from
    /// it. Anything else drops the connection; a client over the per-address limit is refused as at accept.
    /// </summary>
    private async Task<bool> ReadProxyHeaderAsync(IReadOnlyList<System.Net.IPNetwork> trusted, TimeSpan timeout)
    {
        using var deadline = DeadlineFromAccept(timeout);
        var remote = connection.Info.RemoteEndPoint;
        var (header, failure) = await ProxyHeaderStep.ReadAsync(connection.Transport.Input, remote, trusted, timeout, deadline.Token);
        if (failure is not null)
        {
            LogRejection("proxy_header", failure, GatewayLog.ProxyHeaderRejected);
            connection.Abort(ConnectionCloseReason.ProtocolError, failure, grainLost: true);
            return false;
        }

        connection.Info = connection.Info with
        {
            RemoteEndPoint = header.Source ?? remote,
            LocalEndPoint = header.Destination ?? connection.Info.LocalEndPoint,
        };

        // The per-address limit counts the client the header names (the balancer's own address for its health checks,
        // which name none), and is released for that same address.
        if (_listener.AdmitProxiedClient?.Invoke(connection, (header.Source ?? remote!).Address) is not { } refusal)
        {
            return true;
        }

        if (_listener.RefusalMessage.Length > 0)
        {
            connection.Writer.Submit(OutboundKind.Data, _listener.RefusalMessage);
            connection.Close(ConnectionCloseReason.ConnectionLimit, refusal, grainLost: true);
        }
        else
        {
            connection.Abort(ConnectionCloseReason.ConnectionLimit, refusal, grainLost: true);
        }

        return false;
    }

    /// <summary>Runs the TLS step and, on success, hands the connection a transport over TLS.</summary>
    /// <returns>Why it failed, or null.</returns>
    private async Task<string?> AuthenticateAsync(
        (X509Certificate2 Certificate, TlsOptions Options)? server,
        SslClientAuthenticationOptions? client,
        CancellationTokenSource timeout,
        TimeSpan handshakeTimeout)
    {
        var (stream, info, failure) = await TlsStep.AuthenticateAsync(connection.Transport.Raw, server, client, timeout, handshakeTimeout);
        if (failure is not null)
        {
            return failure;
        }

        connection.UseTransport(connection.Transport.WithTls(stream!));
        connection.Info = connection.Info with { Tls = info };
        return null;
    }

    /// <summary>
    /// A token cancelled when <paramref name="limit"/> has passed since the accept (PROXY header, TLS handshake): counted
    /// from the accept, not from when this task got to run; already cancelled when the limit has passed.
    /// </summary>
    private CancellationTokenSource DeadlineFromAccept(TimeSpan limit)
    {
        var left = connection.Clock.Remaining(limit, ConnectionClock.Now(_listener.Time));
        var deadline = new CancellationTokenSource(left == TimeSpan.Zero ? Timeout.InfiniteTimeSpan : left, _listener.Time);
        if (left == TimeSpan.Zero)
        {
            // A zero delay would wait for the clock's next move on some clocks (a fake one); it is due now.
            deadline.Cancel();
        }

        return deadline;
    }
}
