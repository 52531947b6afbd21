namespace OrleansProtocol.Wire;

/// <summary>
/// One silo's gateway, asked for its own connections (an Orleans grain service, one per silo). The wire contract
/// behind <see cref="IConnectionDirectory"/>; protocol code does not call it.
/// </summary>
[Alias("OrleansProtocol.IConnectionRegistry")]
public interface IConnectionRegistry : Orleans.Services.IGrainService
{
    /// <summary>This silo's live connections of <paramref name="listenerName"/>.</summary>
    [Alias("List")]
    Task<ConnectionInfo[]> List(string listenerName);

    /// <summary>This silo's live connection with that id, or null.</summary>
    [Alias("Find")]
    Task<ConnectionInfo?> Find(string connectionId);

    /// <summary>This silo's live connections of <paramref name="listenerName"/>, with their figures.</summary>
    [Alias("ListStatus")]
    Task<ConnectionStatus[]> ListStatus(string listenerName);

    /// <summary>
    /// A call by id reached a hibernated connection's grain, which woke without its state: the gateway holding the
    /// socket hands the state over (once) and counts the connection awake.
    /// </summary>
    [Orleans.Concurrency.AlwaysInterleave]
    [Alias("TakeHibernated")]
    Task<HibernatedState> TakeHibernated(string connectionId);
}

/// <summary>What a gateway answers for a hibernated connection's state.</summary>
/// <param name="Live">The connection is live on this silo.</param>
/// <param name="State">Its state, handed over now; null when it is awake or being woken (the state is on its way to the grain).</param>
[GenerateSerializer, Immutable, Alias("OrleansProtocol.HibernatedState")]
public readonly record struct HibernatedState([property: Id(0)] bool Live, [property: Id(1)] byte[]? State);
