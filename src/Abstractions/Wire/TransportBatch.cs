namespace OrleansProtocol.Wire;

/// <summary>
/// Transport operations a grain made, in the order it made them, as they travel to the gateway.
/// </summary>
/// <remarks>
/// Wire type between <c>ProtocolGrain</c> and the gateway; protocol code never builds one. A grain's writes since
/// the last batch are concatenated into <see cref="Data"/>; the flags say what followed them. Every batch carries a
/// <see cref="Sequence"/> number, assigned by the grain in the order the operations were made, and the gateway
/// applies batches strictly in that order whichever path brought them (a callback's reply or an observer push),
/// because Orleans does not order un-awaited calls across silos.
/// </remarks>
[GenerateSerializer, Immutable, Alias("OrleansProtocol.TransportBatch")]
public sealed class TransportBatch
{
    /// <summary>Position of this batch in the connection's stream of batches, starting at 1 with no gaps.</summary>
    [Id(0)]
    public long Sequence { get; init; }

    /// <summary>Bytes to write, in order. Never mutated after the batch is sealed.</summary>
    [Id(1)]
    public ReadOnlyMemory<byte> Data { get; init; }

    /// <summary>What the grain asked for after writing <see cref="Data"/>.</summary>
    [Id(2)]
    public TransportBatchFlags Flags { get; init; }

    /// <summary>New high-water mark when <see cref="TransportBatchFlags.SetWriteBufferLimits"/> is set.</summary>
    [Id(3)]
    public int WriteBufferHigh { get; init; }

    /// <summary>New low-water mark when <see cref="TransportBatchFlags.SetWriteBufferLimits"/> is set.</summary>
    [Id(4)]
    public int WriteBufferLow { get; init; }

    /// <summary>Why the grain closes or aborts, when <see cref="TransportBatchFlags.Close"/> or <see cref="TransportBatchFlags.Abort"/> is set.</summary>
    [Id(5)]
    public ConnectionCloseReason CloseReason { get; init; }

    /// <summary>Human-readable detail for <see cref="CloseReason"/>, for the gateway's log.</summary>
    [Id(6)]
    public string? CloseMessage { get; init; }

    /// <summary>With <see cref="TransportBatchFlags.SetProtocol"/>: the grain type that takes the connection over.</summary>
    [Id(7)]
    public string? NewProtocol { get; init; }

    /// <summary>
    /// With <see cref="TransportBatchFlags.SetProtocol"/>: bytes the old protocol received but leaves to the new one;
    /// they reach the new grain first, before anything read later.
    /// </summary>
    [Id(8)]
    public ReadOnlyMemory<byte> HandOffData { get; init; }

    /// <summary>With <see cref="TransportBatchFlags.Moved"/>: the silo the grain lives on now (<c>SiloAddress.ToString()</c>).</summary>
    [Id(9)]
    public string? GrainSilo { get; init; }

    /// <summary>
    /// With <see cref="TransportBatchFlags.StartTls"/> on an outbound connection: the client side's settings (server
    /// name, trust); null on an accepted connection, which takes the server side with the listener's certificate.
    /// </summary>
    [Id(10)]
    public ClientTls? StartTlsClient { get; init; }

    /// <summary>
    /// With <see cref="TransportBatchFlags.Groups"/>: groups the connection leaves before <see cref="Data"/> is queued,
    /// so no group message follows what the protocol wrote (an unsubscription's confirmation).
    /// </summary>
    [Id(11)]
    public string[]? LeaveGroups { get; init; }

    /// <summary>
    /// With <see cref="TransportBatchFlags.Groups"/>: groups the connection joins once <see cref="Data"/> is queued, so
    /// group messages come after what the protocol wrote (a subscription's confirmation).
    /// </summary>
    [Id(12)]
    public string[]? JoinGroups { get; init; }

    /// <summary>With <see cref="TransportBatchFlags.SetReceiveTimeout"/>: the protocol's receive timeout; zero turns it off.</summary>
    [Id(13)]
    public TimeSpan ReceiveTimeout { get; init; }

    /// <summary>With <see cref="TransportBatchFlags.SetReceiveDeadline"/>: the deadline, counted from when the gateway applies the batch; zero clears it.</summary>
    [Id(14)]
    public TimeSpan ReceiveDeadline { get; init; }
}

/// <summary>Operations carried by a <see cref="TransportBatch"/> besides its data.</summary>
[Flags]
public enum TransportBatchFlags
{
    /// <summary>Only data.</summary>
    None = 0,

    /// <summary>Half-close after the data is sent (asyncio <c>write_eof</c>).</summary>
    WriteEof = 1,

    /// <summary>Flush, then close (asyncio <c>close</c>).</summary>
    Close = 2,

    /// <summary>Discard everything buffered and reset the connection (asyncio <c>abort</c>).</summary>
    Abort = 4,

    /// <summary>Stop delivering data (asyncio <c>pause_reading</c>); the last of PauseReading/ResumeReading wins.</summary>
    PauseReading = 8,

    /// <summary>Deliver data again (asyncio <c>resume_reading</c>).</summary>
    ResumeReading = 16,

    /// <summary>New write-buffer watermarks are in <see cref="TransportBatch.WriteBufferHigh"/> and <see cref="TransportBatch.WriteBufferLow"/>.</summary>
    SetWriteBufferLimits = 32,

    /// <summary>
    /// Hand the connection to another protocol grain (asyncio <c>set_protocol</c>): the last batch of this grain.
    /// </summary>
    SetProtocol = 64,

    /// <summary>
    /// The grain moved to another silo with its connection (<see cref="TransportBatch.GrainSilo"/>), so the gateway
    /// follows it there rather than taking the old silo's end for the grain's.
    /// </summary>
    Moved = 128,

    /// <summary>
    /// The grain is going away and has delivered <c>ConnectionLost</c> to its protocol itself (its silo stops and the
    /// protocol cannot move): the gateway finishes the connection (flush, close) without calling the grain again.
    /// </summary>
    Detach = 256,

    /// <summary>
    /// Upgrade the connection to TLS (asyncio <c>start_tls</c>) once the data before it is sent; nothing read before the
    /// handshake reaches the protocol, and it hears <c>TlsStarted</c> when the handshake is done.
    /// </summary>
    StartTls = 512,

    /// <summary>The connection joins or leaves groups (<see cref="TransportBatch.JoinGroups"/>, <see cref="TransportBatch.LeaveGroups"/>).</summary>
    Groups = 1024,

    /// <summary>The protocol's receive timeout changes to <see cref="TransportBatch.ReceiveTimeout"/>.</summary>
    SetReceiveTimeout = 2048,

    /// <summary>The protocol's receive deadline is set (or cleared) to <see cref="TransportBatch.ReceiveDeadline"/> from now.</summary>
    SetReceiveDeadline = 4096,
}
