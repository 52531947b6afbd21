using OrleansProtocol.Gateway.Diagnostics;

namespace OrleansProtocol.Gateway.Connections;

/// <summary>
/// What the connection asks of its pump between reads, in priority order: a hand-off to another protocol, STARTTLS, a
/// server close, locating the grain, a write-flow notification; otherwise wait (input is held) or read.
/// </summary>
internal sealed partial class GatewayConnection
{
    /// <summary>The pump's next job, in priority order; taken under the lock so that each is done once.</summary>
    internal PumpWork TakeWork()
    {
        lock (_lock)
        {
            // The pump asks first right after ConnectionMade: from here the connection is open.
            _life.Opened();
            if (_life.IsEnding)
            {
                return new(PumpWorkKind.Stop);
            }

            if (_handOff is { } handOff)
            {
                return new(PumpWorkKind.HandOff, HandOff: handOff);
            }

            if (_startTls is { Done.Task.IsCompleted: false } upgrade)
            {
                return new(PumpWorkKind.StartTls, Upgrade: upgrade);
            }

            if ((_requests & PumpRequests.ServerClose) != 0)
            {
                _requests &= ~PumpRequests.ServerClose;
                return new(PumpWorkKind.ServerClose, Close: _serverClose!.Value);
            }

            if ((_requests & PumpRequests.Locate) != 0)
            {
                _requests &= ~PumpRequests.Locate;
                return new(PumpWorkKind.Locate);
            }

            if ((_requests & PumpRequests.Hibernate) != 0)
            {
                _requests &= ~PumpRequests.Hibernate;
                return new(PumpWorkKind.Hibernate);
            }

            // Write flow-control notifications go first, in the order they happened.
            if (Writer.TryTakeFlowEvent(out var flow))
            {
                return new(PumpWorkKind.WriteFlow, Flow: flow);
            }

            // Back-pressure: while the peer has not taken what the protocol wrote (writing is paused), its next input
            // waits, so a protocol that answers what it reads cannot outrun a peer that reads slowly.
            var paused = _readPaused || Volatile.Read(ref _peerEof) || (Writer.Paused && !Listener.Options.ReadWhileWritingPaused);
            return new(paused ? PumpWorkKind.Wait : PumpWorkKind.Read);
        }
    }

    /// <summary>
    /// asyncio's <c>set_protocol</c>, on the pump: the connection goes to a new grain of the requested type (same
    /// connection id); the old protocol's later batches are dropped.
    /// </summary>
    internal void SwitchProtocol(string protocol)
    {
        GrainId grain;
        lock (_lock)
        {
            _sequencer.NextEpoch();
            grain = _grainId = GrainId.Create(GrainType.Create(protocol), Id);

            // The new protocol's counts start here; what the old one left in the buffer is its inheritance. It starts
            // as asyncio's does: reading, default watermarks, and told at once if the write buffer is over the mark.
            Info = Info with { GrainType = protocol, InheritedWriteBufferSize = Writer.Buffered };
            _handOff = null;
            SetReadPausedLocked(false);
            Writer.ConfigureFlow(null, restart: true);
        }

        Session.Retarget(grain);
        GatewayLog.ProtocolSwitched(Logger, Id, protocol);
    }
}
