using Microsoft.Extensions.Logging;
using OrleansProtocol.Diagnostics;
using OrleansProtocol.Gateway.Connections;
using OrleansProtocol.Gateway.Diagnostics;
using OrleansProtocol.Wire;

namespace OrleansProtocol.Gateway;

/// <summary>
/// The gateway's view of the cluster: it follows membership for the silos its connections' grains live on, and moves
/// grains away from a silo that stops while their sockets are elsewhere.
/// </summary>
internal sealed class ClusterWatch(IClusterMembershipService membership, IGrainFactory grains, ILogger logger)
{
    /// <summary>Says which silos are active whenever that set changes: the line an operator reads after a fault.</summary>
    private void LogActiveSilos(ClusterMembershipSnapshot snapshot, HashSet<SiloAddress> active)
    {
        var now = snapshot.Members.Values.Where(m => m.Status == SiloStatus.Active).Select(m => m.SiloAddress).ToHashSet();
        if (now.SetEquals(active))
        {
            return;
        }

        static string List(IEnumerable<SiloAddress> silos) => silos.Any() ? string.Join(", ", silos.Select(s => s.ToString()).Order()) : "none";
        GatewayLog.MembershipChanged(logger, now.Count, List(now), List(now.Except(active)), List(active.Except(now)));
        active.Clear();
        active.UnionWith(now);
    }

    /// <summary>
    /// When membership declares a silo dead, connections whose grains lived there are aborted at once (their grains are
    /// gone; the next callback would only find a fresh activation), instead of waiting for the client's next bytes.
    /// A silo seen stopping gracefully first is different: its grains moved with their connections or closed them, and
    /// its death can reach this gateway before a moved grain's notice does, so those connections ask their grains.
    /// </summary>
    public async Task WatchMembershipAsync(Func<IEnumerable<GatewayConnection>> connections, CancellationToken cancellation)
    {
        var stopping = new HashSet<SiloAddress>();
        var active = new HashSet<SiloAddress>();
        try
        {
            await foreach (var snapshot in membership.MembershipUpdates.WithCancellation(cancellation))
            {
                LogActiveSilos(snapshot, active);
                stopping.UnionWith(snapshot.Members.Values.Where(m => m.Status is SiloStatus.ShuttingDown or SiloStatus.Stopping).Select(m => m.SiloAddress));
                var dead = snapshot.Members.Values.Where(m => m.Status == SiloStatus.Dead).ToDictionary(m => m.SiloAddress.ToString(), m => stopping.Contains(m.SiloAddress));
                stopping.RemoveWhere(s => !snapshot.Members.ContainsKey(s));
                var located = new Dictionary<string, int>();
                foreach (var connection in connections())
                {
                    if (connection.GrainSilo is not { } silo || !dead.TryGetValue(silo, out var graceful))
                    {
                        continue;
                    }

                    if (graceful)
                    {
                        GatewayLog.LocatingGrain(logger, connection.Id, silo);
                        located[silo] = located.GetValueOrDefault(silo) + 1;
                        connection.LocateGrain();
                    }
                    else
                    {
                        logger.LogWarning("Connection {ConnectionId}: the silo holding its grain ({Silo}) died; aborting.", connection.Id, silo);
                        connection.AbortGrainLost($"The silo holding the connection's grain ({silo}) died.");
                    }
                }

                foreach (var (silo, count) in located)
                {
                    GatewayLog.GrainSiloStopped(logger, silo, count);
                }
            }
        }
        catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
        {
        }
    }

    /// <summary>
    /// The silo stops while some of its connection grains serve sockets on other silos: each protocol that can move
    /// goes to the silo of its socket with its connection (grain migration), before Orleans deactivates what is left.
    /// The others close cleanly when they are deactivated. Waits up to <paramref name="timeout"/> for the moves.
    /// </summary>
    public async Task MoveGrainsAwayAsync(ConnectionGrainCounters? counters, TimeSpan timeout, TimeProvider time, CancellationToken cancellationToken)
    {
        if (counters?.GrainsAwayFromSocket is not { Count: > 0 } away)
        {
            return;
        }

        var moving = await Task.WhenAll(away.Select(async grain =>
        {
            try
            {
                return await grains.GetGrain<IProtocolGrain>(grain.Grain).LeaveSilo(grain.GatewaySilo) ? grain.Left.Task : null;
            }
            catch (Exception ex)
            {
                logger.LogWarning(ex, "Connection grain {Grain} could not be asked to move; it closes when the silo deactivates it.", grain.Grain);
                return null;
            }
        }));

        var moves = moving.OfType<Task>().ToArray();
        try
        {
            await Task.WhenAll(moves).WaitAsync(timeout, time, cancellationToken);
        }
        catch (Exception ex) when (ex is TimeoutException or OperationCanceledException)
        {
        }

        GatewayLog.GrainsMovedAway(logger, moves.Count(t => t.IsCompleted), moving.Length - moves.Length);
    }
}
