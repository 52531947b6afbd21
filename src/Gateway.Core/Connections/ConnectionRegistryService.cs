using Microsoft.Extensions.Logging;
using OrleansProtocol.Wire;

namespace OrleansProtocol.Gateway.Connections;

/// <summary>
/// This silo's gateway, answering for its own live connections (made, not yet ended): the per-silo half of the
/// cluster-wide <see cref="IConnectionDirectory"/>. An Orleans grain service, so every silo has one at a known address.
/// </summary>
internal sealed class ConnectionRegistryService(GrainId id, Silo silo, ILoggerFactory loggerFactory, ProtocolGateway gateway)
    : GrainService(id, silo, loggerFactory), IConnectionRegistry
{
    public Task<ConnectionInfo[]> List(string listenerName) =>
        Task.FromResult(Live().Where(c => c.Info.ListenerName == listenerName).Select(c => c.Info).ToArray());

    public Task<ConnectionInfo?> Find(string connectionId) =>
        Task.FromResult(Live().FirstOrDefault(c => c.Id == connectionId)?.Info);

    public Task<ConnectionStatus[]> ListStatus(string listenerName) =>
        Task.FromResult(Live().Where(c => c.Info.ListenerName == listenerName).Select(c => c.Status()).ToArray());

    public Task<HibernatedState> TakeHibernated(string connectionId) =>
        Task.FromResult(gateway.FindConnection(connectionId) is { Completion.IsCompleted: false } connection
            ? new HibernatedState(true, connection.Sleep.TakeState())
            : default);

    private IEnumerable<GatewayConnection> Live() =>
        gateway.AllConnections.Where(c => c.Made.IsCompletedSuccessfully && c.Made.Result && !c.Completion.IsCompleted);
}
