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
}
