namespace OrleansProtocol;

/// <summary>
/// The live connections of one listener, cluster-wide, kept in memory by one activation per listener name. If its
/// silo fails the directory starts empty again; the connections themselves are unaffected.
/// </summary>
public sealed class ConnectionDirectoryGrain : Grain, IConnectionDirectory
{
    private readonly Dictionary<string, ConnectionInfo> _connections = [];

    /// <inheritdoc />
    public Task Add(ConnectionInfo connection)
    {
        _connections[connection.ConnectionId] = connection;
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task Remove(string connectionId)
    {
        _connections.Remove(connectionId);
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task<ConnectionInfo[]> List() => Task.FromResult(_connections.Values.ToArray());

    /// <inheritdoc />
    public Task<ConnectionInfo?> Find(string connectionId) =>
        Task.FromResult(_connections.GetValueOrDefault(connectionId));
}
