using OrleansProtocol.Gateway.Connections.Opening;
using OrleansProtocol.Gateway.Diagnostics;
using OrleansProtocol.Wire;

namespace OrleansProtocol.Gateway.Connections;

/// <summary>
/// Applying the grain's batches: each one's operations in the order the grain made them, the batches strictly in their
/// sequence order whichever path brought them (a callback's reply or an observer push), under the connection's lock.
/// </summary>
internal sealed partial class GatewayConnection
{
    /// <summary>
    /// Applies a push from <paramref name="grain"/>: from the connection's current protocol, unless it is one that
    /// handed the connection over (another grain type), whose pushes are dropped.
    /// </summary>
    /// <returns>The bytes sent so far, as the current protocol counts them.</returns>
    internal long ApplyPush(GrainId grain, TransportBatch batch)
    {
        Offer(batch, grain, lastSequence: 0);
        return ProtocolBytesSent;
    }

    /// <summary>
    /// Applies a callback's reply batch; true when every batch the grain had sealed before replying is applied (some may
    /// still be on their way through the observer, and the next callback must see their effects), or the connection
    /// is past waiting for them.
    /// </summary>
    internal bool ApplyReply(TransportBatch? batch, long lastSequence) => Offer(batch, from: null, lastSequence);

    /// <summary>
    /// Applies <paramref name="batch"/> (a reply's, or a push <paramref name="from"/> a grain, which must be the current
    /// protocol's) and says whether everything up to <paramref name="lastSequence"/> is applied, in one turn of the lock.
    /// </summary>
    private bool Offer(TransportBatch? batch, GrainId? from, long lastSequence)
    {
        bool caughtUp;
        lock (_lock)
        {
            if (batch is not null && (from is null || from.Value.Equals(_grainId)))
            {
                OfferLocked(batch);
            }

            caughtUp = _sequencer.Applied >= lastSequence || _life.IsAborted || _handOff is not null;
        }

        Writer.Wake();
        return caughtUp;
    }

    /// <summary>Whether the pump has caught up with <paramref name="lastSequence"/> (see <see cref="ApplyReply"/>).</summary>
    internal bool IsCaughtUp(long lastSequence) => ApplyReply(null, lastSequence);

    /// <summary>
    /// Applies one batch in sequence order. Stale, duplicate or early batches stop here (the sequencer holds an early
    /// one until its turn); after a hand-off nothing more from this protocol applies.
    /// </summary>
    private void OfferLocked(TransportBatch batch)
    {
        if (_handOff is null && _sequencer.Offer(batch, _sequencer.Epoch, this, static (connection, next) =>
        {
            connection.ApplyInOrderLocked(next);
            return connection._handOff is null;
        }))
        {
            // The pump may be waiting for this sequence number, or for reading to resume.
            WakePumpLocked();
        }
    }

    /// <summary>What one batch asks for, in the order the grain asked for it.</summary>
    private void ApplyInOrderLocked(TransportBatch batch)
    {
        if (_life.IsAborted)
        {
            return;
        }

        var flags = batch.Flags;
        if ((flags & TransportBatchFlags.Abort) != 0)
        {
            AbortLocked(Reason(batch, ConnectionCloseReason.LocalAbort), batch.CloseMessage);
            return;
        }

        if ((flags & TransportBatchFlags.Moved) != 0 && batch.GrainSilo is { } grainSilo)
        {
            // The grain moved with the connection (its old silo is stopping, say): follow it, so the old silo's end is
            // not taken for the grain's death.
            Session.GrainSilo = grainSilo;
            GatewayLog.GrainMoved(Logger, Id, grainSilo);
        }

        if ((flags & TransportBatchFlags.Detach) != 0)
        {
            // The grain is going away and has told its protocol: finish the connection without calling it again, and
            // without taking its silo's end for a reason to reset (the flush may outlast the silo).
            _life.Detach();
            Session.GrainSilo = null;
        }

        if ((flags & TransportBatchFlags.SetWriteBufferLimits) != 0)
        {
            Writer.ConfigureFlow((batch.WriteBufferHigh, batch.WriteBufferLow), restart: false);
        }

        if ((flags & (TransportBatchFlags.SetReceiveTimeout | TransportBatchFlags.SetReceiveDeadline)) != 0)
        {
            SetProtocolClocks(batch);
        }

        if ((flags & TransportBatchFlags.PauseReading) != 0)
        {
            SetReadPausedLocked(true);
        }
        else if ((flags & TransportBatchFlags.ResumeReading) != 0)
        {
            SetReadPausedLocked(false);
        }

        StartTlsUpgrade? upgrade = null;
        if ((flags & TransportBatchFlags.StartTls) != 0 && !Transport.IsTls && _startTls is null && !Writer.OutputShut)
        {
            // Before the go-ahead this batch carries: the writer stops there until the pump has noted what the peer
            // sent so far, which it sent before it could have seen the go-ahead.
            _startTls = upgrade = new StartTlsUpgrade(batch.StartTlsClient);
            Writer.Submit(OutboundKind.StartTlsGate, upgrade: upgrade);
        }

        if (batch.LeaveGroups is { } leaves)
        {
            // Before the data: nothing of these groups follows what the protocol wrote with the leave.
            foreach (var group in leaves)
            {
                Listener.Services.Groups.Leave(group, Id);
            }
        }

        if (!batch.Data.IsEmpty && !Writer.Submit(OutboundKind.Data, batch.Data))
        {
            // The grain's transport stops a ProtocolGrain at the same cap before this; this holds for any IProtocolGrain.
            var detail = Writer.OverCapDetail();
            Opening.LogRejection("write_buffer_limit", detail, GatewayLog.WriteBufferLimit);
            AbortLocked(ConnectionCloseReason.WriteBufferLimit, detail);
            return;
        }

        if (batch.JoinGroups is { } joins)
        {
            // After the data: the groups' messages come behind what the protocol wrote with the join.
            foreach (var group in joins)
            {
                Listener.Services.Groups.Join(group, this);
            }
        }

        if ((flags & TransportBatchFlags.WriteEof) != 0)
        {
            Writer.Submit(OutboundKind.WriteEof);
        }

        if ((flags & TransportBatchFlags.Close) != 0)
        {
            CloseLocked(Reason(batch, ConnectionCloseReason.LocalClose), batch.CloseMessage);
        }

        if (upgrade is not null)
        {
            Writer.Submit(OutboundKind.StartTls, upgrade: upgrade);
        }

        if ((flags & TransportBatchFlags.SetProtocol) != 0 && batch.NewProtocol is { } protocol)
        {
            // The pump switches grains before its next callback; this grain's later batches are dropped.
            _handOff = (protocol, batch.HandOffData);
        }

        if (Writer.HasFlowEvent || upgrade is not null || _handOff is not null)
        {
            WakePumpLocked();
        }

        static ConnectionCloseReason Reason(TransportBatch batch, ConnectionCloseReason fallback) =>
            batch.CloseReason == ConnectionCloseReason.None ? fallback : batch.CloseReason;
    }

    /// <summary>The protocol's own receive clocks (<c>SetReceiveTimeout</c>, <c>SetReceiveDeadline</c>), run by the heartbeat.</summary>
    private void SetProtocolClocks(TransportBatch batch)
    {
        var now = ConnectionClock.Now(Listener.Time);
        if ((batch.Flags & TransportBatchFlags.SetReceiveTimeout) != 0)
        {
            Clock.SetProtocolReceiveTimeout(Ms(batch.ReceiveTimeout), now);
        }

        if ((batch.Flags & TransportBatchFlags.SetReceiveDeadline) != 0)
        {
            Clock.SetProtocolReceiveDeadline(Ms(batch.ReceiveDeadline), now);
        }

        // Zero is off; anything else at least a millisecond (a wire value that is not a TimeSpan a grain could set is clamped).
        static long Ms(TimeSpan t) => t <= TimeSpan.Zero ? 0 : Math.Max(1, (long)Math.Min(t.TotalMilliseconds, long.MaxValue / 4));
    }
}
