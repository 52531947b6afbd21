using Microsoft.Extensions.Logging;
using OrleansProtocol.Diagnostics;
using OrleansProtocol.Wire;

namespace OrleansProtocol;

/// <summary>
/// One membership watch per silo for the connection grains it hosts away from their sockets: when membership declares
/// a gateway's silo dead, the grains whose sockets were there are told (<see cref="IProtocolGrain.GatewayLost"/>). A
/// grain costs a registry entry, not a membership subscription of its own, so a membership change wakes one loop, not
/// every remote grain. Registered per silo by the gateway.
/// </summary>
internal sealed class GatewayWatch(IClusterMembershipService membership, IGrainFactory grains, ConnectionGrainCounters away, ILogger<GatewayWatch> logger)
    : IDisposable
{
    private readonly CancellationTokenSource _stopping = new();
    private int _started;

    /// <summary>The grain serves a socket on <paramref name="gatewaySilo"/>: tell it if that silo dies.</summary>
    public void Watch(GrainId grain, string gatewaySilo)
    {
        away.AwayFromSocket(grain, gatewaySilo);
        if (Interlocked.Exchange(ref _started, 1) == 0)
        {
            _ = Task.Run(RunAsync);
        }

        // Dead already (the grain started watching late): no update will say so again.
        if (membership.CurrentSnapshot.GetSiloStatus(SiloAddress.FromParsableString(gatewaySilo)) == SiloStatus.Dead)
        {
            _ = TellAsync(grain, gatewaySilo);
        }
    }

    private async Task RunAsync()
    {
        try
        {
            await foreach (var snapshot in membership.MembershipUpdates.WithCancellation(_stopping.Token))
            {
                var dead = snapshot.Members.Values.Where(m => m.Status == SiloStatus.Dead).Select(m => m.SiloAddress.ToParsableString()).ToHashSet();
                foreach (var grain in away.GrainsAwayFromSocket.Where(g => dead.Contains(g.GatewaySilo)))
                {
                    _ = TellAsync(grain.Grain, grain.GatewaySilo);
                }
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
        }
    }

    private async Task TellAsync(GrainId grain, string gatewaySilo)
    {
        try
        {
            await grains.GetGrain<IProtocolGrain>(grain).GatewayLost(gatewaySilo);
        }
        catch (Exception ex)
        {
            logger.LogDebug(ex, "Could not tell {Grain} that the silo holding its socket ({Silo}) died.", grain, gatewaySilo);
        }
    }

    public void Dispose()
    {
        _stopping.Cancel();
        _stopping.Dispose();
    }
}
