using System.Buffers;
using System.IO.Pipelines;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using OrleansProtocol.Framing;
using OrleansProtocol.Gateway.Connections.Opening;
using OrleansProtocol.Gateway.Diagnostics;

namespace OrleansProtocol.Gateway.Connections;

/// <summary>
/// The inbound pump: runs the opening steps, then reads the input and keeps exactly one grain callback in flight,
/// awaiting each before the next, so callbacks reach the grain in order on any topology. Bytes read meanwhile wait in
/// the input pipe and are coalesced into the next <c>DataReceived</c>; when the pipe holds
/// <see cref="ProtocolListenerOptions.MaxReadBufferSize"/> bytes, Kestrel stops reading the socket and TCP pushes back
/// on the peer. What the connection asks of it between reads (a hand-off, a server close, a write-flow notification)
/// comes from <see cref="GatewayConnection.TakeWork"/>.
/// </summary>
/// <remarks>Its fields are its own: only the pump's loop touches them, except <see cref="Wake"/>.</remarks>
internal sealed class ConnectionPump(GatewayConnection connection)
{
    // Keeps one FramesReceived call a reasonable Orleans message even for tiny frames.
    private const int MaxFramesPerCall = 1024;

    /// <summary>How long a gracefully closed connection waits for the peer's FIN before the socket is closed.</summary>
    private static readonly TimeSpan LingerTimeout = TimeSpan.FromSeconds(2);

    private readonly AsyncSignal _signal = new();
    private readonly ListenerContext _listener = connection.Listener;
    private readonly GrainSession _session = connection.Session;
    private readonly IFrameDecoder? _decoder = connection.Listener.CreateDecoder();
    private volatile PipeReader _input = connection.Writer.Transport.Input;
    private volatile bool _tls;

    // What the grain refused while it had paused reading: delivered first once it resumes.
    private byte[]? _deferredData;
    private ReadOnlyMemory<byte>[]? _deferredFrames;
    private bool _deferredEof;

    private ConnectionTransport Transport => connection.Writer.Transport;

    /// <summary>Whether the connection runs over TLS (from accept or since STARTTLS).</summary>
    public bool IsTls => _tls;

    /// <summary>
    /// Something changed that the pump must see (a close, an abort, a flow event): wakes its wait and its read. Safe
    /// under the connection's lock: Kestrel's reader continuations run on the thread pool.
    /// </summary>
    public void Wake()
    {
        _signal.Set();
        _input.CancelPendingRead();
    }

    /// <summary>The opening steps before any grain exists: the PROXY header, then TLS at accept.</summary>
    /// <returns>False when the connection was dropped (or refused) in one of them.</returns>
    public async Task<bool> OpenAsync()
    {
        if (_listener.Proxy is var (trusted, timeout) && !await ReadProxyHeaderAsync(trusted, timeout))
        {
            return false;
        }

        var server = _listener.Certificate is { } certificate && !_listener.Options.Tls.StartTls ? (certificate, _listener.Options.Tls) : ((System.Security.Cryptography.X509Certificates.X509Certificate2, TlsOptions)?)null;
        if (server is null && connection.ClientTls is null)
        {
            return true;
        }

        var handshakeTimeout = server?.Item2.HandshakeTimeout ?? connection.ClientTls!.Value.Timeout;
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

    /// <summary>The pump's loop, from after <c>ConnectionMade</c> until the connection closes or aborts.</summary>
    public async Task RunAsync()
    {
        while (true)
        {
            var work = connection.TakeWork();
            switch (work.Kind)
            {
                case PumpWorkKind.Stop:
                    return;

                case PumpWorkKind.HandOff:
                    // The hand-off comes with the old protocol's last reply, so nothing was deferred: what it left goes first.
                    var handed = connection.SwitchProtocol(work.HandOff.Protocol, work.HandOff.Data);
                    await ApplyReplyAsync(await _session.ConnectionMadeAsync());
                    _deferredData = handed.IsEmpty ? null : handed.ToArray();
                    continue;

                case PumpWorkKind.StartTls:
                    // What the protocol did not take before starting TLS was sent before the handshake: never delivered.
                    var undelivered = (_deferredData?.Length ?? 0) + (_deferredFrames?.Sum(f => (long)f.Length) ?? 0);
                    (_deferredData, _deferredFrames, _deferredEof) = (null, null, false);
                    if (!await UpgradeToTlsAsync(work.Upgrade!, undelivered))
                    {
                        return;
                    }

                    continue;

                case PumpWorkKind.ServerClose:
                    await ApplyReplyAsync(await _session.CloseRequestedAsync(work.Close.Reason, work.Close.Detail));

                    // The reply normally carried the close already; this covers a grain that did not close.
                    connection.Close(work.Close.Reason, work.Close.Detail);
                    continue;

                case PumpWorkKind.Locate:
                    await ApplyReplyAsync(await _session.LocateAsync());
                    continue;

                case PumpWorkKind.WriteFlow:
                    await ApplyReplyAsync(await _session.WriteFlowAsync(work.Flow));
                    continue;

                case PumpWorkKind.Wait:
                    await _signal.WaitAsync();
                    continue;
            }

            if (_deferredData is { } data)
            {
                _deferredData = await DeliverDataAsync(data) ? null : data;
            }
            else if (_deferredFrames is { } frames)
            {
                _deferredFrames = await DeliverFramesAsync(frames);
            }
            else if (_deferredEof)
            {
                _deferredEof = !await DeliverEofAsync();
            }
            else if (!await ReadAsync())
            {
                return;
            }
        }
    }

    /// <summary>
    /// Applies a callback's reply, then waits until every batch the grain had sealed before replying is applied too
    /// (some may still be on their way through the observer), so the next callback sees their effects.
    /// </summary>
    public async Task ApplyReplyAsync(ProtocolReply reply)
    {
        if (reply.Status == ProtocolReplyStatus.UnknownConnection)
        {
            connection.UnknownConnection();
            return;
        }

        // A reply in order, with nothing on its way before it (the usual case), is applied and done in one turn.
        if (connection.ApplyReply(reply.Batch, reply.LastSequence))
        {
            return;
        }

        do
        {
            await _signal.WaitAsync();
        }
        while (!connection.IsCaughtUp(reply.LastSequence));
    }

    /// <summary>
    /// Lingering close (as nginx and Apache do): after our FIN, read and drop what the peer still sends until it closes
    /// or <see cref="LingerTimeout"/> passes.
    /// </summary>
    public async Task LingerAsync()
    {
        using var linger = new CancellationTokenSource(LingerTimeout, _listener.Time);
        try
        {
            while (true)
            {
                var read = await _input.ReadAsync(linger.Token);
                _input.AdvanceTo(read.Buffer.End);
                if (read.IsCompleted || read.IsCanceled)
                {
                    return;
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or ConnectionResetException or IOException or ObjectDisposedException or InvalidOperationException)
        {
            // The peer did not close in time, or reset: the socket closes now.
        }
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

    /// <returns>False when the input failed (a reset): the connection was aborted.</returns>
    private async Task<bool> ReadAsync()
    {
        ReadResult result;
        try
        {
            connection.Clock.StartReceiveWait(ConnectionClock.Now(_listener.Time));
            result = await _input.ReadAsync();
        }
        catch (Exception ex)
        {
            // Kestrel completes the input with the socket error (a reset, typically).
            connection.Abort(ConnectionCloseReason.PeerReset, ex.Message);
            return false;
        }

        var buffer = result.Buffer;
        if (!buffer.IsEmpty)
        {
            connection.Clock.PeerSentData();
        }

        if (result.IsCanceled)
        {
            // Woken by CancelPendingRead: state changed (close, abort, a flow event).
            _input.AdvanceTo(buffer.Start);
            return true;
        }

        if (_decoder is not null)
        {
            await ReceiveFramesAsync(result);
            return true;
        }

        if (!buffer.IsEmpty)
        {
            // One copy out of the pipe into an array the grain owns; the pipe's memory goes back to Kestrel's pool.
            var chunk = buffer.Slice(0, Math.Min(buffer.Length, _listener.Options.MaxDataReceivedSize)).ToArray();
            _input.AdvanceTo(buffer.GetPosition(chunk.Length));
            Received(chunk.Length);
            if (!await DeliverDataAsync(chunk))
            {
                _deferredData = chunk;
            }
        }
        else if (result.IsCompleted)
        {
            _input.AdvanceTo(buffer.End);
            _deferredEof = !await DeliverEofAsync();
        }
        else
        {
            _input.AdvanceTo(buffer.Start, buffer.End);
        }

        return true;
    }

    private void Received(long bytes)
    {
        connection.AddBytesReceived(bytes);
        connection.Clock.Touch(ConnectionClock.Now(_listener.Time));
        if (bytes > 0)
        {
            _listener.Metrics.BytesReceived(_listener.Name, bytes);
        }
    }

    /// <summary>
    /// The framed read: whole frames out of the pipe (a batch of them up to <see cref="ProtocolListenerOptions.MaxDataReceivedSize"/>),
    /// an incomplete one left there until the rest arrives; a frame over the limit closes the connection before its
    /// body is read. Frames before a bad one are delivered; the bad one is met again at the start of the next read.
    /// </summary>
    private async Task ReceiveFramesAsync(ReadResult result)
    {
        var buffer = result.Buffer;
        var maxBatch = _listener.Options.MaxDataReceivedSize;

        // Allocated at the first whole frame: a peer trickling a frame costs no allocation per read.
        List<ReadOnlyMemory<byte>>? frames = null;
        long consumed = 0;
        long batchBytes = 0;
        var status = FrameReadStatus.NeedMoreData;
        string? problem = null;
        while (batchBytes < maxBatch && (frames?.Count ?? 0) < MaxFramesPerCall)
        {
            status = _decoder!.TryRead(buffer.Slice(consumed), out var frame, out var frameLength);
            if (status != FrameReadStatus.Frame)
            {
                break;
            }

            if (frameLength <= 0 || frameLength > buffer.Length - consumed)
            {
                // A decoder that makes no progress (or claims bytes it was not given) would spin or corrupt the stream.
                status = FrameReadStatus.Invalid;
                problem = $"The listener's decoder returned a frame consuming {frameLength} of {buffer.Length - consumed} bytes.";
                break;
            }

            (frames ??= []).Add(frame.ToArray());
            consumed += frameLength;
            batchBytes += frame.Length;
        }

        if (status == FrameReadStatus.NeedMoreData && buffer.Length - consumed > _listener.MaxBufferedFrame)
        {
            // The backstop for a decoder that does not decide TooLarge from its headers: memory stays bounded.
            status = FrameReadStatus.TooLarge;
            problem = $"The listener's decoder needed more than {buffer.Length - consumed} bytes for one frame, over the maximum of {_listener.Framing.MaxFrameSize} bytes.";
        }

        var truncatedByEof = frames is null && status == FrameReadStatus.NeedMoreData && result.IsCompleted;
        if (truncatedByEof)
        {
            if (buffer.Length > consumed)
            {
                GatewayLog.TruncatedFrame(_listener.Logger, connection.Id, buffer.Length - consumed);
            }

            _input.AdvanceTo(buffer.End);
        }
        else
        {
            // Examined everything only when what is left is an incomplete frame: the next read waits for more bytes.
            var rest = buffer.GetPosition(consumed);
            _input.AdvanceTo(rest, status == FrameReadStatus.NeedMoreData ? buffer.End : rest);
        }

        connection.Clock.TrackIncompleteFrame(consumed, status == FrameReadStatus.NeedMoreData && !truncatedByEof ? buffer.Length - consumed : 0, ConnectionClock.Now(_listener.Time));
        Received(consumed);
        if (frames is not null)
        {
            _deferredFrames = await DeliverFramesAsync([.. frames]);
            return;
        }

        if (status is FrameReadStatus.TooLarge or FrameReadStatus.Invalid)
        {
            var detail = problem ?? _decoder!.Problem ?? (status == FrameReadStatus.Invalid
                ? "The listener's decoder found an invalid frame."
                : $"A frame exceeds the maximum of {_listener.Framing.MaxFrameSize} bytes.");
            LogRejection("frame_rejected", detail, GatewayLog.FrameRejected);
            _listener.Metrics.FrameOverLimit(_listener.Name);

            // Through the grain, so what it wrote is flushed before the close.
            connection.RequestClose(status == FrameReadStatus.Invalid ? ConnectionCloseReason.ProtocolError : ConnectionCloseReason.FrameTooLarge, detail);
            return;
        }

        _deferredEof = truncatedByEof && !await DeliverEofAsync();
    }

    /// <returns>False when the grain deferred the data because it paused reading.</returns>
    private async Task<bool> DeliverDataAsync(byte[] data)
    {
        var reply = await _session.DataReceivedAsync(data);
        await ApplyReplyAsync(reply);
        return reply.Status != ProtocolReplyStatus.Deferred;
    }

    /// <returns>The frames the grain did not take because it paused reading, or null.</returns>
    private async Task<ReadOnlyMemory<byte>[]?> DeliverFramesAsync(ReadOnlyMemory<byte>[] frames)
    {
        var reply = await _session.FramesReceivedAsync(frames);
        await ApplyReplyAsync(reply);
        return reply.Status == ProtocolReplyStatus.Deferred ? frames[reply.FramesTaken..] : null;
    }

    /// <returns>False when the grain deferred the EOF because it paused reading.</returns>
    private async Task<bool> DeliverEofAsync()
    {
        var reply = await _session.EofReceivedAsync();
        await ApplyReplyAsync(reply);
        if (reply.Status == ProtocolReplyStatus.Deferred)
        {
            return false;
        }

        connection.EofDelivered(reply.KeepOpen);
        return true;
    }

    /// <summary>
    /// Reads the PROXY protocol header that a trusted load balancer sends first, and takes the client's addresses from
    /// it. Anything else drops the connection; a client over the per-address limit is refused as at accept.
    /// </summary>
    private async Task<bool> ReadProxyHeaderAsync(IReadOnlyList<System.Net.IPNetwork> trusted, TimeSpan timeout)
    {
        using var deadline = DeadlineFromAccept(timeout);
        var remote = connection.Info.RemoteEndPoint;
        var (header, failure) = await ProxyHeaderStep.ReadAsync(_input, remote, trusted, timeout, deadline.Token);
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
        if (connection.Writer.IsAborted)
        {
            return false;
        }

        if (undelivered > 0)
        {
            _listener.Logger.LogWarning("Connection {ConnectionId}: dropped {Bytes} bytes the peer sent before the TLS handshake it was asked to start.", connection.Id, undelivered);
        }

        string? failure;

        // The listener's handshake timeout; outbound, the one it was opened with when it had TLS from the start, or 10 s.
        var handshakeTimeout = _listener.Certificate is not null ? _listener.Options.Tls.HandshakeTimeout
            : connection.ClientTls is { Timeout: var t } && t > TimeSpan.Zero ? t : new TlsOptions().HandshakeTimeout;
        if (upgrade.Client is null && _listener.Certificate is null)
        {
            failure = "The protocol started TLS, but the listener has no certificate for it (Tls.CertificatePath with Tls.StartTls).";
        }
        else
        {
            using var timeout = new CancellationTokenSource(handshakeTimeout, _listener.Time);
            var server = _listener.Certificate is { } certificate ? (certificate, _listener.Options.Tls) : ((System.Security.Cryptography.X509Certificates.X509Certificate2, TlsOptions)?)null;
            failure = await AuthenticateAsync(server, upgrade.Client is { } client ? TlsStep.ClientOptions(client) : null, timeout, handshakeTimeout);
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
        await ApplyReplyAsync(await _session.TlsStartedAsync());
        return true;
    }

    /// <summary>Runs the TLS step and, on success, swaps the connection's transport for one over TLS.</summary>
    /// <returns>Why it failed, or null.</returns>
    private async Task<string?> AuthenticateAsync(
        (System.Security.Cryptography.X509Certificates.X509Certificate2 Certificate, TlsOptions Options)? server,
        System.Net.Security.SslClientAuthenticationOptions? client,
        CancellationTokenSource timeout,
        TimeSpan handshakeTimeout)
    {
        var (stream, info, failure) = await TlsStep.AuthenticateAsync(Transport.Raw, server, client, timeout, handshakeTimeout);
        if (failure is not null)
        {
            return failure;
        }

        var tls = Transport.WithTls(stream!);
        connection.Writer.Transport = tls;
        _input = tls.Input;
        _tls = true;
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
