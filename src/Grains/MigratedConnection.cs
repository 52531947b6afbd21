using OrleansProtocol.Wire;

namespace OrleansProtocol;

/// <summary>
/// A connection's transport as it moves with its grain to another silo (Orleans grain migration): everything the
/// gateway and the grain must agree on to go on byte-exact — the batch sequence, the byte counts behind the write
/// buffer, the watermarks, the state flags, and what was written but not yet handed to the gateway.
/// </summary>
[GenerateSerializer, Alias("OrleansProtocol.MigratedConnection")]
internal sealed record MigratedConnection
{
    [Id(0)] public required ConnectionInfo Connection { get; init; }

    [Id(1)] public required ITransportObserver Observer { get; init; }

    [Id(2)] public long LastSequence { get; init; }

    [Id(3)] public long BytesWritten { get; init; }

    [Id(4)] public long BytesTaken { get; init; }

    [Id(5)] public long BytesSent { get; init; }

    [Id(6)] public int High { get; init; }

    [Id(7)] public int Low { get; init; }

    [Id(8)] public bool Closing { get; init; }

    [Id(9)] public bool EofWritten { get; init; }

    [Id(10)] public bool ReadingPaused { get; init; }

    [Id(11)] public byte[]? PendingData { get; init; }

    [Id(12)] public TransportBatchFlags PendingFlags { get; init; }

    [Id(13)] public ConnectionCloseReason CloseReason { get; init; }

    [Id(14)] public string? CloseMessage { get; init; }

    [Id(15)] public int DroppedWrites { get; init; }

    // The receive clocks a batch not yet sent would have carried (with their flags in PendingFlags).
    [Id(16)] public TimeSpan ReceiveTimeout { get; init; }

    [Id(17)] public TimeSpan ReceiveDeadline { get; init; }
}
