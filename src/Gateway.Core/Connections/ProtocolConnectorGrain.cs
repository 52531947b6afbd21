using Orleans.Concurrency;

namespace OrleansProtocol.Gateway.Connections;

/// <summary>
/// Serves <see cref="IProtocolConnector"/> on the silo the call lands on, with that silo's gateway. A stateless
/// worker: always local to its caller's silo, never a bottleneck.
/// </summary>
[StatelessWorker]
public sealed class ProtocolConnectorGrain(ProtocolGateway gateway) : Grain, IProtocolConnector
{
    /// <inheritdoc />
    public Task<ConnectionInfo> Connect(ConnectRequest request) =>
        // Off the grain's scheduler: the gateway registers the connection's observer, which Orleans allows only
        // outside a grain turn.
        Task.Run(() => gateway.ConnectAsync(request, cancellationToken: CancellationToken.None));
}
