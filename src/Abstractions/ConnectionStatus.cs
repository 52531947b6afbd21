namespace OrleansProtocol;

/// <summary>
/// A live connection as its gateway sees it now: where its grain runs, how long it has been open, the bytes each way
/// and whether it is paused. Asked of the cluster with <c>ProtocolConnections.ListConnectionStatusAsync</c>.
/// </summary>
/// <param name="Info">The connection's info, as its grain got it.</param>
/// <param name="GrainSilo">The silo its grain last answered from (<c>SiloAddress.ToString()</c>), or null before it answered.</param>
/// <param name="Age">How long ago the gateway accepted (or opened) it.</param>
/// <param name="BytesReceived">Bytes read from the peer.</param>
/// <param name="BytesSent">Bytes the kernel took for the peer.</param>
/// <param name="WritingPaused">Over the write buffer's high-water mark (the protocol heard <c>PauseWriting</c>).</param>
/// <param name="ReadingPaused">The protocol paused reading.</param>
[GenerateSerializer, Immutable, Alias("OrleansProtocol.ConnectionStatus")]
public sealed record ConnectionStatus(
    [property: Id(0)] ConnectionInfo Info,
    [property: Id(1)] string? GrainSilo,
    [property: Id(2)] TimeSpan Age,
    [property: Id(3)] long BytesReceived,
    [property: Id(4)] long BytesSent,
    [property: Id(5)] bool WritingPaused,
    [property: Id(6)] bool ReadingPaused)
{
    /// <summary>Its grain hibernates: no activation, the state at the gateway (<c>HibernateAfter</c>); <see cref="GrainSilo"/> is null.</summary>
    [Id(7)]
    public bool Hibernated { get; init; }
}
