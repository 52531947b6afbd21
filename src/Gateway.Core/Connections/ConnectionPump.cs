using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using Microsoft.AspNetCore.Connections;
using OrleansProtocol.Framing;
using OrleansProtocol.Gateway.Diagnostics;
using OrleansProtocol.Wire;

namespace OrleansProtocol.Gateway.Connections;

/// <summary>
/// The inbound pump: reads the input and keeps exactly one grain callback in flight, awaiting each before the next, so
/// callbacks reach the grain in order on any topology. Bytes read meanwhile wait in the input pipe and are coalesced
/// into the next <c>DataReceived</c>; when the pipe holds <see cref="ProtocolListenerOptions.MaxReadBufferSize"/>
/// bytes, Kestrel stops reading the socket and TCP pushes back on the peer. What the connection asks of it between
/// reads (a hand-off, a server close, a write-flow notification) comes from <see cref="GatewayConnection.TakeWork"/>.
/// </summary>
/// <remarks>
/// Its fields are its own: only the pump's loop touches them, except <see cref="Wake"/>. The read, the callback and
/// the reply run inline in <see cref="RunAsync"/>, one async frame for the connection's life, so a request allocates
/// nothing here but the bytes the grain is given.
/// </remarks>
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

    // What the grain refused while it had paused reading (or the old protocol left to a new one): delivered first.
    private Inbound _deferred;

    private PipeReader Input => connection.Transport.Input;

    /// <summary>
    /// Something changed that the pump must see (a close, an abort, a flow event): wakes its wait and its read. Safe
    /// under the connection's lock: Kestrel's reader continuations run on the thread pool.
    /// </summary>
    public void Wake()
    {
        _signal.Set();
        Input.CancelPendingRead();
    }

    /// <summary>The pump's loop, from after <c>ConnectionMade</c> until the connection closes or aborts.</summary>
    public async Task RunAsync()
    {
        while (true)
        {
            var work = connection.TakeWork();
            if (work.Kind != PumpWorkKind.Read)
            {
                if (!await DoAsync(work))
                {
                    return;
                }

                continue;
            }

            Inbound inbound;
            if (_deferred.Kind != InboundKind.None)
            {
                (inbound, _deferred) = (_deferred, default);
            }
            else
            {
                ReadResult result;
                try
                {
                    connection.Clock.StartReceiveWait(ConnectionClock.Now(_listener.Time));
                    result = await Input.ReadAsync();
                }
                catch (Exception ex)
                {
                    // Kestrel completes the input with the socket error (a reset, typically).
                    connection.Abort(ConnectionCloseReason.PeerReset, ex.Message);
                    return;
                }

                inbound = _decoder is null ? TakeBytes(result) : TakeFrames(result);
                if (inbound.Kind == InboundKind.None)
                {
                    continue;
                }
            }

            // A hibernated grain wakes with its state first (every other callback wakes it in GrainSession.CallAsync).
            if (connection.Sleep.IsAsleep)
            {
                await _session.WakeAsync();
            }

            // The callback, with Orleans' undelivered requests sent again (GrainSession.CallAsync), inline.
            var started = Stopwatch.GetTimestamp();
            ProtocolReply reply;
            for (var attempt = 1; ; attempt++)
            {
                try
                {
                    reply = await inbound.Deliver(_session);
                    break;
                }
                catch (OrleansMessageRejectionException ex) when (attempt < GrainSession.MaxGrainCallAttempts)
                {
                    GatewayLog.GrainCallRejected(_listener.Logger, connection.Id, attempt, ex.Message);
                }
            }

            _listener.Metrics.GrainCall(_listener.Name, inbound.CallbackName, started);
            await ApplyReplyAsync(reply);
            if (reply.Status == ProtocolReplyStatus.Deferred)
            {
                // The grain has paused reading: it gets these again once it resumes.
                _deferred = inbound.Kind == InboundKind.Frames ? inbound with { Frames = inbound.Frames![reply.FramesTaken..] } : inbound;
            }
            else if (inbound.Kind == InboundKind.Eof)
            {
                connection.EofDelivered(reply.KeepOpen);
            }
        }
    }

    /// <summary>
    /// Applies a callback's reply, then waits until every batch the grain had sealed before replying is applied too
    /// (some may still be on their way through the observer), so the next callback sees their effects.
    /// </summary>
    public async ValueTask ApplyReplyAsync(ProtocolReply reply)
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
                var read = await Input.ReadAsync(linger.Token);
                Input.AdvanceTo(read.Buffer.End);
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

    /// <summary>Everything but a read: the connection's requests of the pump, one at a time.</summary>
    /// <returns>False when the pump is done.</returns>
    private async Task<bool> DoAsync(PumpWork work)
    {
        switch (work.Kind)
        {
            case PumpWorkKind.HandOff:
                // The hand-off comes with the old protocol's last reply, so nothing was deferred: what it left goes first.
                connection.SwitchProtocol(work.HandOff.Protocol);
                await ApplyReplyAsync(await _session.ConnectionMadeAsync());
                _deferred = work.HandOff.Data.IsEmpty ? default : new Inbound(InboundKind.Data, work.HandOff.Data.ToArray());
                return true;

            case PumpWorkKind.StartTls:
                // What the protocol did not take before starting TLS was sent before the handshake: never delivered.
                var undelivered = (_deferred.Data?.Length ?? 0) + (_deferred.Frames?.Sum(f => (long)f.Length) ?? 0);
                _deferred = default;
                if (!await connection.Opening.UpgradeToTlsAsync(work.Upgrade!, undelivered))
                {
                    return false;
                }

                await ApplyReplyAsync(await _session.TlsStartedAsync());
                return true;

            case PumpWorkKind.ServerClose:
                await ApplyReplyAsync(await _session.CloseRequestedAsync(work.Close.Reason, work.Close.Detail));

                // The reply normally carried the close already; this covers a grain that did not close.
                connection.Close(work.Close.Reason, work.Close.Detail);
                return true;

            case PumpWorkKind.Locate:
                await ApplyReplyAsync(await _session.LocateAsync());
                return true;

            case PumpWorkKind.Hibernate:
                await _session.HibernateAsync();
                return true;

            case PumpWorkKind.WriteFlow:
                await ApplyReplyAsync(await _session.WriteFlowAsync(work.Flow));
                return true;

            case PumpWorkKind.Wait:
                await _signal.WaitAsync();
                return true;

            default:
                return false;
        }
    }

    /// <summary>A raw read: the bytes (up to <see cref="ProtocolListenerOptions.MaxDataReceivedSize"/>) or the EOF.</summary>
    private Inbound TakeBytes(ReadResult result)
    {
        var buffer = result.Buffer;
        if (result.IsCanceled)
        {
            // Woken by CancelPendingRead: state changed (close, abort, a flow event).
            Input.AdvanceTo(buffer.Start);
            return default;
        }

        if (!buffer.IsEmpty)
        {
            // One copy out of the pipe into an array the grain owns; the pipe's memory goes back to Kestrel's pool.
            connection.Clock.PeerSentData(ConnectionClock.Now(_listener.Time));
            var chunk = buffer.Slice(0, Math.Min(buffer.Length, _listener.Options.MaxDataReceivedSize)).ToArray();
            Input.AdvanceTo(buffer.GetPosition(chunk.Length));
            Received(chunk.Length);
            return new Inbound(InboundKind.Data, chunk);
        }

        if (result.IsCompleted)
        {
            Input.AdvanceTo(buffer.End);
            return new Inbound(InboundKind.Eof);
        }

        Input.AdvanceTo(buffer.Start, buffer.End);
        return default;
    }

    /// <summary>
    /// The framed read: whole frames out of the pipe (a batch of them up to <see cref="ProtocolListenerOptions.MaxDataReceivedSize"/>),
    /// an incomplete one left there until the rest arrives; a frame over the limit closes the connection before its
    /// body is read. Frames before a bad one are delivered; the bad one is met again at the start of the next read.
    /// </summary>
    private Inbound TakeFrames(ReadResult result)
    {
        var buffer = result.Buffer;
        if (result.IsCanceled)
        {
            Input.AdvanceTo(buffer.Start);
            return default;
        }

        if (!buffer.IsEmpty)
        {
            connection.Clock.PeerSentData(ConnectionClock.Now(_listener.Time));
        }

        // Allocated at the first whole frame: a peer trickling a frame costs no allocation per read.
        List<ReadOnlyMemory<byte>>? frames = null;
        long consumed = 0;
        long batchBytes = 0;
        var status = FrameReadStatus.NeedMoreData;
        string? problem = null;
        while (batchBytes < _listener.Options.MaxDataReceivedSize && (frames?.Count ?? 0) < MaxFramesPerCall)
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

            Input.AdvanceTo(buffer.End);
        }
        else
        {
            // Examined everything only when what is left is an incomplete frame: the next read waits for more bytes.
            var rest = buffer.GetPosition(consumed);
            Input.AdvanceTo(rest, status == FrameReadStatus.NeedMoreData ? buffer.End : rest);
        }

        connection.Clock.TrackIncompleteFrame(consumed, status == FrameReadStatus.NeedMoreData && !truncatedByEof ? buffer.Length - consumed : 0, ConnectionClock.Now(_listener.Time));
        Received(consumed);
        if (frames is not null)
        {
            return new Inbound(InboundKind.Frames, Frames: [.. frames]);
        }

        if (status is FrameReadStatus.TooLarge or FrameReadStatus.Invalid)
        {
            var detail = problem ?? _decoder!.Problem ?? (status == FrameReadStatus.Invalid
                ? "The listener's decoder found an invalid frame."
                : $"A frame exceeds the maximum of {_listener.Framing.MaxFrameSize} bytes.");
            connection.Opening.LogRejection("frame_rejected", detail, GatewayLog.FrameRejected);
            _listener.Metrics.FrameOverLimit(_listener.Name);

            // Through the grain, so what it wrote is flushed before the close.
            connection.RequestClose(status == FrameReadStatus.Invalid ? ConnectionCloseReason.ProtocolError : ConnectionCloseReason.FrameTooLarge, detail);
            return default;
        }

        return truncatedByEof ? new Inbound(InboundKind.Eof) : default;
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

    private enum InboundKind
    {
        None,
        Data,
        Frames,
        Eof,
    }

    /// <summary>What one read gave the grain: bytes, frames, or the peer's EOF.</summary>
    private readonly record struct Inbound(InboundKind Kind, byte[]? Data = null, ReadOnlyMemory<byte>[]? Frames = null)
    {
        /// <summary>The callback's name on the grain-call metric.</summary>
        public string CallbackName => Kind switch
        {
            InboundKind.Data => "data_received",
            InboundKind.Frames => "frames_received",
            _ => "eof_received",
        };

        public Task<ProtocolReply> Deliver(GrainSession session) => Kind switch
        {
            InboundKind.Data => session.DataReceived(Data!),
            InboundKind.Frames => session.FramesReceived(Frames!),
            _ => session.EofReceived(),
        };
    }
}
