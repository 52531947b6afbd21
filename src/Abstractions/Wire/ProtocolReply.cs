namespace OrleansProtocol.Wire;

/// <summary>
/// A grain's answer to a gateway callback: the transport operations the callback made, and whether the callback
/// took the event.
/// </summary>
/// <param name="Batch">Operations made during the callback, or null when there were none.</param>
/// <param name="Status">Whether the grain took the event.</param>
/// <param name="KeepOpen">For <c>EofReceived</c>: true keeps the connection half-open (asyncio's truthy return).</param>
/// <param name="LastSequence">
/// The highest <see cref="TransportBatch.Sequence"/> the grain had assigned when it replied. The gateway applies every
/// batch up to it before the next callback, so a callback always sees the effects of everything the grain did
/// before (a pause pushed through the observer, for instance), even when that push is still on its way.
/// </param>
/// <param name="FramesTaken">
/// For <c>FramesReceived</c>: how many of the frames the protocol took before it paused reading; the gateway keeps the
/// rest (the reply is then <see cref="ProtocolReplyStatus.Deferred"/>).
/// </param>
[GenerateSerializer, Immutable, Alias("OrleansProtocol.ProtocolReply")]
public readonly record struct ProtocolReply(
    [property: Id(0)] TransportBatch? Batch,
    [property: Id(1)] ProtocolReplyStatus Status,
    [property: Id(2)] bool KeepOpen,
    [property: Id(3)] long LastSequence,
    [property: Id(4)] int FramesTaken = 0)
{
    /// <summary>For <c>ConnectionMade</c> and <c>Locate</c>: the silo the grain lives on (<c>SiloAddress.ToString()</c>), so
    /// the gateway can close the connection at once if that silo dies.</summary>
    [Id(5)]
    public string? GrainSilo { get; init; }
}

/// <summary>How a grain handled a gateway callback.</summary>
public enum ProtocolReplyStatus
{
    /// <summary>The event was delivered to the protocol.</summary>
    Accepted = 0,

    /// <summary>
    /// The protocol has paused reading: the event was not delivered, and the gateway keeps it until the grain resumes
    /// reading. This makes <c>PauseReading</c> take effect at once even for data already on its way.
    /// </summary>
    Deferred = 1,

    /// <summary>
    /// The grain has no such connection (a fresh activation after the original one was lost, or the connection
    /// already ended); the gateway aborts the socket.
    /// </summary>
    UnknownConnection = 2,
}
