using Microsoft.Extensions.Logging;
using OrleansProtocol.Wire;

namespace OrleansProtocol.Gateway.Groups;

/// <summary>
/// This silo's gateway, for the groups of its own connections: the per-silo half of <see cref="IConnectionGroup"/>. An
/// Orleans grain service, so every silo has one at a known address. Only records and enqueues; never calls a grain.
/// </summary>
internal sealed class GroupGatewayService(GrainId id, Silo silo, ILoggerFactory loggerFactory, ProtocolGateway gateway)
    : GrainService(id, silo, loggerFactory), IGroupGateway
{
    public Task<bool> Join(string group, string connectionId) =>
        Task.FromResult(gateway.FindConnection(connectionId) is { } connection
            && connection.Made.IsCompletedSuccessfully && connection.Made.Result
            && gateway.Groups.Join(group, connection));

    public Task<bool> Leave(string group, string connectionId) => Task.FromResult(gateway.Groups.Leave(group, connectionId));

    public Task<GroupSendResult> Deliver(string group, byte[] data, bool frame, string? except, GroupOverflow overflow) =>
        Task.FromResult(gateway.Groups.Deliver(group, data, frame, except, overflow));

    public Task<string[]> Members(string group) => Task.FromResult(gateway.Groups.Members(group));

    public Task<Dictionary<string, int>> Groups() => Task.FromResult(gateway.Groups.Groups());
}
