using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orleans.Runtime.Placement;
using OrleansProtocol.Wire;

namespace OrleansProtocol;

/// <summary>
/// A connection outlives the silo of its grain: when that silo stops gracefully (or an operator or Orleans' rebalancer
/// moves the grain), a protocol that opts in moves to another silo with its connection — Orleans grain migration —
/// while the gateway keeps the socket. The transport moves byte-exact: the batch sequence, the byte counts behind the
/// write buffer, the watermarks, reading paused or not, and what was written but not yet sent.
/// </summary>
/// <remarks>
/// <para>
/// Opt in by overriding <see cref="Migratable"/>, and move the protocol's own fields in <see cref="Dehydrate"/> and
/// <see cref="Rehydrate"/> (a protocol that keeps nothing needs only <see cref="Migratable"/>). What the base class
/// owns besides the transport does not move: pending <c>CallSoon</c>/<c>CallLater</c>/<c>CallAt</c> callbacks are
/// cancelled and tasks from <c>CreateTask</c> are cancelled and awaited before the move, as at <c>ConnectionLost</c>;
/// the new activation's <see cref="Grain.OnActivateAsync"/> (which runs after <see cref="Rehydrate"/>) is where a
/// protocol starts again what it needs. No callback is in progress during the move: Orleans moves an idle grain, and
/// the gateway's next callback waits and then reaches the new activation. A grain asked to move again within a second
/// of arriving leaves when that second is up (Orleans would drop a move back to a silo still letting go of the activation
/// that just left it).
/// </para>
/// <para>
/// A protocol that does not opt in is not moved: when its grain is deactivated (its silo stopping, or asked to
/// migrate) its connection is closed cleanly, flushed then FIN, and it gets <c>ConnectionLost</c> once.
/// </para>
/// </remarks>
public abstract partial class ProtocolGrain : IGrainMigrationParticipant
{
    private const string MigrationKey = "orleansprotocol.connection";

    // Orleans drops a migration to a silo that still holds the activation which just left it (the target finds it
    // in its catalog and takes the move as too late), and the next call then activates the grain afresh, without its
    // connection. The old activation is gone milliseconds after the new one is valid; a grain that moves again within
    // this time of arriving waits out the rest before it leaves (wall clock: the race is Orleans' own).
    private static readonly TimeSpan ArrivalSettle = TimeSpan.FromSeconds(1);

    private MigratedConnection? _moving;
    private MigratedConnection? _moved;
    private long _arrivedTimestamp;

    /// <summary>
    /// True when this protocol's connections may move to another silo with their grain; false (the default) closes
    /// them cleanly instead. Return true when <see cref="Dehydrate"/> and <see cref="Rehydrate"/> carry every field
    /// the protocol keeps (or it keeps none).
    /// </summary>
    protected virtual bool Migratable => false;

    /// <summary>
    /// The grain is moving with its connection: write the protocol's own fields into <paramref name="context"/>
    /// (<c>context.TryAddValue("name", value)</c>, any serializable value). Runs on the old silo, after
    /// <see cref="Grain.OnDeactivateAsync"/>; only for a <see cref="Migratable"/> protocol.
    /// </summary>
    protected virtual void Dehydrate(IDehydrationContext context)
    {
    }

    /// <summary>
    /// The grain moved with its connection: read back what <see cref="Dehydrate"/> wrote. Runs on the new silo,
    /// before <see cref="Grain.OnActivateAsync"/>; the transport is already there.
    /// </summary>
    protected virtual void Rehydrate(IRehydrationContext context)
    {
    }

    void IGrainMigrationParticipant.OnDehydrate(IDehydrationContext dehydrationContext)
    {
        if (_moving is { } moving)
        {
            dehydrationContext.TryAddValue(MigrationKey, moving);
            Dehydrate(dehydrationContext);
        }
    }

    void IGrainMigrationParticipant.OnRehydrate(IRehydrationContext rehydrationContext)
    {
        if (rehydrationContext.TryGetValue(MigrationKey, out MigratedConnection? moved))
        {
            _moved = moved;
            _observer = moved.Observer;
            _transport = ProtocolTransport.Rehydrate(this, moved);
            Rehydrate(rehydrationContext);
        }
    }

    /// <inheritdoc />
    /// <remarks>A grain that moved here with its connection takes it up: derived classes call the base.</remarks>
    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        if (_moved is { } moved && _transport is { } transport)
        {
            _moved = null;
            _arrivedTimestamp = System.Diagnostics.Stopwatch.GetTimestamp();
            CountConnection();
            WatchGateway();

            // The gateway follows the grain here (with what was written but not sent before the move).
            transport.MarkMoved(RuntimeIdentity);
            Logger.LogDebug("Connection {ConnectionId} moved here with its grain (batch {Sequence}).", moved.Connection.ConnectionId, moved.LastSequence);
        }

        return base.OnActivateAsync(cancellationToken);
    }

    Task<bool> IProtocolGrain.LeaveSilo(string targetSilo)
    {
        if (_transport is null || _lostDelivered || !Migratable)
        {
            // Not moving: closed cleanly when the silo deactivates it.
            return Task.FromResult(false);
        }

        // Placement honours the hint: the grain goes next to its socket.
        RequestContext.Set(IPlacementDirector.PlacementHintKey, SiloAddress.FromParsableString(targetSilo));
        MigrateOnIdle();
        RequestContext.Remove(IPlacementDirector.PlacementHintKey);
        return Task.FromResult(true);
    }

    /// <summary>On the old silo, once idle and deactivating to move: what the new activation will take up.</summary>
    private async Task PrepareToMoveAsync(ProtocolTransport transport, ITransportObserver observer, CancellationToken cancellationToken)
    {
        if (_arrivedTimestamp != 0 && ArrivalSettle - System.Diagnostics.Stopwatch.GetElapsedTime(_arrivedTimestamp) is { Ticks: > 0 } settle)
        {
            // Possibly back to the silo it came from: wait until that silo has let go of the activation that left it.
            try
            {
                await Task.Delay(settle, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                // Out of time to deactivate: leave now.
            }
        }

        // Nothing of the nursery moves (see the class remarks).
        await ExitNurseryAsync();
        StopWatchingGateway();
        _moving = transport.Dehydrate(observer);
        _counts?.Connection(-1);
        _counts = null;
        Logger.LogDebug(
            "Connection {ConnectionId} moving with its grain (batch {Sequence}, {Pending} bytes not yet sent).",
            transport.Connection.ConnectionId, transport.LastSequence, transport.PendingBytes);
    }

    private void CountConnection()
    {
        _counters = ServiceProvider.GetService<Diagnostics.ConnectionGrainCounters>();
        _counts = _counters?.For(_transport!.Connection.ListenerName);
        _counts?.Connection(1);
    }
}
