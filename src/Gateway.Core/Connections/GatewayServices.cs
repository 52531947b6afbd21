using Microsoft.Extensions.Logging;
using OrleansProtocol.Gateway.Diagnostics;
using OrleansProtocol.Gateway.Groups;
using OrleansProtocol.Wire;

namespace OrleansProtocol.Gateway.Connections;

/// <summary>
/// The silo-wide services every server and connection of the gateway shares (as Orleans' <c>ConnectionCommon</c>):
/// made once when the gateway starts, handed down through each <see cref="ListenerContext"/>.
/// </summary>
internal sealed record GatewayServices(
    IGrainFactory GrainFactory,
    ITransportObserver Observer,
    GatewayMetrics Metrics,
    SiloConnectionBudget Budget,
    ConnectionGroups Groups,
    TimeProvider Time,
    ILoggerFactory LoggerFactory,
    TimeSpan DrainTimeout)
{
    /// <summary>The connections' logger (category <c>GatewayConnection</c>).</summary>
    public ILogger ConnectionLogger { get; } = LoggerFactory.CreateLogger<GatewayConnection>();
}
