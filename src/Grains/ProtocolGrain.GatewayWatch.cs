using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using OrleansProtocol.Wire;

namespace OrleansProtocol;

/// <summary>
/// A grain on another silo than its socket watches that silo — through its silo's one <see cref="GatewayWatch"/>, or
/// by itself on a silo without the gateway: if membership declares it dead (the process crashed), nobody else can
/// tell the grain its connection is gone, so it tells itself — <c>ConnectionLost</c> with
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
        if (ServiceProvider.GetService<GatewayWatch>() is { } silosWatch)
        {
            // The silo's one watch tells this grain (GatewayLost): no membership subscription per grain.
            silosWatch.Watch(this.GetGrainId(), gateway);
        }
        else
        {
            // A silo without the gateway registered: the grain watches for itself.
            _ = WatchGatewayAsync(membership, gatewaySilo, _gatewayWatch.Token);
        }
    }

    Task IProtocolGrain.GatewayLost(string gatewaySilo) =>
        _gatewayWatch is not null && _transport?.Connection.GatewaySilo == gatewaySilo && !_lostDelivered
            ? GatewayDiedAsync(gatewaySilo)
            : Task.CompletedTask;

    private async Task GatewayDiedAsync(string gateway)
    {
        var message = $"The silo holding the socket ({SiloAddress.FromParsableString(gateway)}) died.";
        Logger.LogWarning("Connection {ConnectionId}: {Message}", _transport!.Connection.ConnectionId, message);
        await DeliverConnectionLost(
            ConnectionCloseReason.GatewayUnavailable,
            new ConnectionClosedException(ConnectionCloseReason.GatewayUnavailable, message));
        DeactivateOnIdle();
    }

    private async Task WatchGatewayAsync(IClusterMembershipService membership, SiloAddress gateway, CancellationToken cancellation)
    {
        try
        {
            await foreach (var snapshot in membership.MembershipUpdates.WithCancellation(cancellation))
            {
                if (snapshot.GetSiloStatus(gateway) is SiloStatus.Dead)
                {
                    await GatewayDiedAsync(gateway.ToParsableString());
                    return;
                }
            }
        }
        catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
        {
        }
    }

    private void StopWatchingGateway()
    {
        if (_gatewayWatch is { } watch)
        {
            watch.Cancel();
            _gatewayWatch = null;
            _counts?.GatewayWatch(-1);
            _counters?.NoLongerAway(this.GetGrainId());
        }
    }
}
