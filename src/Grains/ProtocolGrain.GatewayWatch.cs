using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace OrleansProtocol;

/// <summary>
/// A grain on another silo than its socket watches that silo: if membership declares it dead (the process crashed),
/// nobody else can tell the grain its connection is gone, so it tells itself — <c>ConnectionLost</c> with
/// <see cref="ConnectionCloseReason.GatewayUnavailable"/> — and deactivates. Detection takes the cluster's failure
/// detection time (Orleans' <c>ClusterMembershipOptions</c>: probes every 5 s, 3 missed probes, 2 votes by default).
/// </summary>
public abstract partial class ProtocolGrain
{
    private CancellationTokenSource? _gatewayWatch;

    private void WatchGateway()
    {
        if (_transport?.Connection.GatewaySilo is not { } gateway
            || ServiceProvider.GetService<IClusterMembershipService>() is not { } membership
            || SiloAddress.FromParsableString(gateway) is not { } gatewaySilo
            || RuntimeIdentity == gatewaySilo.ToString())
        {
            // Same silo as the socket (they live and die together), or nothing to watch.
            return;
        }

        _gatewayWatch = new CancellationTokenSource();
        _counts?.GatewayWatch(1);
        _counters?.AwayFromSocket(this.GetGrainId(), gateway);
        _ = WatchGatewayAsync(membership, gatewaySilo, _gatewayWatch.Token);
    }

    private async Task WatchGatewayAsync(IClusterMembershipService membership, SiloAddress gateway, CancellationToken cancellation)
    {
        try
        {
            await foreach (var snapshot in membership.MembershipUpdates.WithCancellation(cancellation))
            {
                if (snapshot.GetSiloStatus(gateway) is SiloStatus.Dead)
                {
                    var message = $"The silo holding the socket ({gateway}) died.";
                    Logger.LogWarning("Connection {ConnectionId}: {Message}", _transport!.Connection.ConnectionId, message);
                    await DeliverConnectionLost(
                        ConnectionCloseReason.GatewayUnavailable,
                        new ConnectionClosedException(ConnectionCloseReason.GatewayUnavailable, message));
                    DeactivateOnIdle();
                    return;
                }
            }
        }
        catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
        {
        }
        finally
        {
            _counts?.GatewayWatch(-1);
        }
    }

    private void StopWatchingGateway()
    {
        if (_gatewayWatch is { } watch)
        {
            watch.Cancel();
            _gatewayWatch = null;
            _counters?.NoLongerAway(this.GetGrainId());
        }
    }
}
