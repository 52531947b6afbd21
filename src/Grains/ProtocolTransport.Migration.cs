using System.Buffers;
using OrleansProtocol.Wire;

namespace OrleansProtocol;

/// <summary>The transport when its grain moves to another silo or goes away without moving.</summary>
public sealed partial class ProtocolTransport
{
    /// <summary>The transport as it moves with its grain: see <see cref="MigratedConnection"/>.</summary>
    internal MigratedConnection Dehydrate(ITransportObserver observer) => new()
    {
        Connection = Connection,
        Observer = observer,
        LastSequence = LastSequence,
        BytesWritten = _bytesWritten,
        BytesTaken = _bytesTaken,
        BytesSent = _bytesSent,
        High = _high,
        Low = _low,
        Closing = _closing,
        EofWritten = _eofWritten,
        ReadingPaused = _readingPaused,
        PendingData = HasPendingData ? PendingMemory.ToArray() : null,
        PendingFlags = _flags,
        CloseReason = _closeReason,
        CloseMessage = _closeMessage,
        DroppedWrites = _droppedWrites,
        ReceiveTimeout = _receiveTimeout,
        ReceiveDeadline = _receiveDeadline,
    };

    /// <summary>The transport of a connection that moved here with its grain, as it was on the old silo.</summary>
    internal static ProtocolTransport Rehydrate(ProtocolGrain owner, MigratedConnection state)
    {
        var transport = new ProtocolTransport(owner, state.Connection)
        {
            LastSequence = state.LastSequence,
            _bytesWritten = state.BytesWritten,
            _bytesTaken = state.BytesTaken,
            _bytesSent = state.BytesSent,
            _high = state.High,
            _low = state.Low,
            _closing = state.Closing,
            _eofWritten = state.EofWritten,
            _readingPaused = state.ReadingPaused,
            _flags = state.PendingFlags,
            _closeReason = state.CloseReason,
            _closeMessage = state.CloseMessage,
            _droppedWrites = state.DroppedWrites,
            _receiveTimeout = state.ReceiveTimeout,
            _receiveDeadline = state.ReceiveDeadline,
        };
        if (state.PendingData is { Length: > 0 } pending)
        {
            (transport._data = new ArrayBufferWriter<byte>(pending.Length)).Write(pending);
        }

        return transport;
    }

    /// <summary>Tells the gateway, with the next batch, that the grain now lives on <paramref name="silo"/>.</summary>
    internal void MarkMoved(string silo)
    {
        _movedTo = silo;
        _flags |= TransportBatchFlags.Moved;
        _owner.OnTransportChanged();
    }

    /// <summary>
    /// The grain goes away without moving: close after flushing (unless already closing or aborted) and tell the
    /// gateway not to call the grain again; the grain delivers <c>ConnectionLost</c> itself.
    /// </summary>
    internal void Detach(ConnectionCloseReason reason, string message)
    {
        if ((_flags & TransportBatchFlags.Abort) == 0 && !_closing)
        {
            _closing = true;
            _flags |= TransportBatchFlags.Close;
            _closeReason = reason;
            _closeMessage = message;
        }

        _flags |= TransportBatchFlags.Detach;
    }
}
