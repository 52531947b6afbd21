using System.Buffers;
using Microsoft.Extensions.Logging;
using OrleansProtocol.Wire;

namespace OrleansProtocol;

/// <summary>
/// Recording and sealing: what the protocol writes is held (copied, or one buffer handed over as it is) with its flags
/// until the turn ends, then sealed into one <see cref="TransportBatch"/> for the gateway.
/// </summary>
public sealed partial class ProtocolTransport
{
    /// <summary>Whether a write of <paramref name="length"/> bytes is taken (it may abort the connection at the cap).</summary>
    private bool Admit(int length)
    {
        if (_eofWritten)
        {
            throw new InvalidOperationException("Cannot call Write() after WriteEof().");
        }

        if (length == 0)
        {
            return false;
        }

        if (IsClosing)
        {
            DropWrite(length);
            return false;
        }

        if (Connection.MaxWriteBufferSize is { } cap && GetWriteBufferSize() + length > cap)
        {
            // Stopped here, before the bytes are held on the way: the protocol writes faster than its peer reads.
            var message = $"{GetWriteBufferSize() + length} bytes would be waiting for the peer (it has taken {_bytesSent} so far), over the "
                + $"cap of {cap} (MaxWriteBufferSize): the protocol outruns its peer; honour PauseWriting, or raise the cap for replies this large.";
            _owner.LogSampled(LogLevel.Warning, "write_buffer_limit", message + " Aborting.");
            Abort(ConnectionCloseReason.WriteBufferLimit, message);
            return false;
        }

        return true;
    }

    /// <summary>The buffer writes are copied into, holding a handed-over buffer's bytes first if there is one.</summary>
    private ArrayBufferWriter<byte> Pending(int hint = 256)
    {
        if (_data is null)
        {
            _data = new ArrayBufferWriter<byte>(Math.Max(hint + _handed.Length, 256));
            _data.Write(_handed.Span);
            _handed = default;
        }

        return _data;
    }

    private void Written(int length)
    {
        _bytesWritten += length;
        _owner.OnTransportChanged();
    }

    /// <summary>The bytes written and not yet sealed into a batch.</summary>
    private ReadOnlyMemory<byte> PendingMemory => _data?.WrittenMemory ?? _handed;

    /// <summary>True when written bytes wait to be sealed into a batch.</summary>
    internal bool HasPendingData => _data is not null || !_handed.IsEmpty;

    /// <summary>Seals what was recorded since the last batch, or returns null when nothing was.</summary>
    internal TransportBatch? TakeBatch()
    {
        if (!HasPendingData && _flags == TransportBatchFlags.None)
        {
            return null;
        }

        _bytesTaken += PendingMemory.Length;
        var batch = new TransportBatch
        {
            Sequence = ++LastSequence,
            Data = PendingMemory,
            Flags = _flags,
            WriteBufferHigh = _high,
            WriteBufferLow = _low,
            CloseReason = _closeReason,
            CloseMessage = _closeMessage,
            NewProtocol = _newProtocol,
            HandOffData = _handOffData,
            GrainSilo = (_flags & TransportBatchFlags.Moved) != 0 ? _movedTo : null,
            StartTlsClient = (_flags & TransportBatchFlags.StartTls) != 0 ? _startTlsClient : null,
            LeaveGroups = _leaves is { Count: > 0 } ? [.. _leaves] : null,
            JoinGroups = _joins is { Count: > 0 } ? [.. _joins] : null,
            ReceiveTimeout = _receiveTimeout,
            ReceiveDeadline = _receiveDeadline,
        };
        _joins = null;
        _leaves = null;

        // A new buffer per batch: the gateway may hold this one (local calls skip the copy for [Immutable] types).
        _data = null;
        _handed = default;
        _flags = TransportBatchFlags.None;
        return batch;
    }

    private void DropWrite(int length)
    {
        // From the fifth, as asyncio; then every 1,000th, so a protocol writing to a dead connection cannot flood the log.
        if (++_droppedWrites == DroppedWriteLogThreshold || (_droppedWrites > DroppedWriteLogThreshold && _droppedWrites % 1000 == 0))
        {
            _owner.Logger.LogWarning(
                "Connection {ConnectionId}: dropped a write of {Length} bytes because the transport is closing ({Count} so far).",
                Connection.ConnectionId, length, _droppedWrites);
        }
    }
}
