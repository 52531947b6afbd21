using OrleansProtocol.Gateway.Connections.Opening;

namespace OrleansProtocol.Gateway.Connections;

/// <summary>What the pump does next (<see cref="GatewayConnection.TakeWork"/>).</summary>
internal enum PumpWorkKind
{
    Stop,
    HandOff,
    StartTls,
    ServerClose,
    Locate,
    Hibernate,
    WriteFlow,
    Wait,
    Read,
}

internal readonly record struct PumpWork(
    PumpWorkKind Kind,
    (string Protocol, ReadOnlyMemory<byte> Data) HandOff = default,
    StartTlsUpgrade? Upgrade = null,
    (ConnectionCloseReason Reason, string? Detail) Close = default,
    (bool Pause, long BytesSent) Flow = default);
