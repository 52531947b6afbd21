using OrleansProtocol.Wire;

namespace OrleansProtocol;

/// <summary>Connections as addresses: open outbound ones, find live ones, act on them — from any grain, silo code or
/// external Orleans client.</summary>
public static class ProtocolConnections
{
    /// <summary>The live connection described by <paramref name="connection"/>, to send to, close or abort.</summary>
    public static IProtocolConnection GetConnection(this IGrainFactory grains, ConnectionInfo connection)
    {
        ArgumentNullException.ThrowIfNull(grains);
        ArgumentNullException.ThrowIfNull(connection);
        var grainType = connection.GrainType ?? throw new ArgumentException("The connection's grain type is unknown.", nameof(connection));
        return grains.GetGrain<IProtocolConnection>(GrainId.Create(grainType, connection.ConnectionId));
    }

    /// <summary>The group named <paramref name="name"/>, cluster-wide: add connections, send to all of them (see <see cref="IConnectionGroup"/>).</summary>
    public static IConnectionGroup GetGroup(this IGrainFactory grains, string name)
    {
        ArgumentNullException.ThrowIfNull(grains);
        ArgumentException.ThrowIfNullOrEmpty(name);
        return grains.GetGrain<IConnectionGroup>(name);
    }

    /// <summary>Every group with members, cluster-wide, with its member count.</summary>
    public static Task<Dictionary<string, int>> ListGroupsAsync(this IGrainFactory grains) =>
        grains.GetGrain<IConnectionGroupDirectory>(0).List();

    /// <summary>The live connection with that id (ids are <c>"{listener}/{guid}"</c>), or null.</summary>
    public static async Task<IProtocolConnection?> FindConnectionAsync(this IGrainFactory grains, string connectionId)
    {
        ArgumentException.ThrowIfNullOrEmpty(connectionId);
        var slash = connectionId.LastIndexOf('/');
        if (slash <= 0)
        {
            return null;
        }

        var info = await grains.GetGrain<IConnectionDirectory>(connectionId[..slash]).Find(connectionId);
        return info is null ? null : grains.GetConnection(info);
    }

    /// <summary>The live connections of a listener, across every silo.</summary>
    public static Task<ConnectionInfo[]> ListConnectionsAsync(this IGrainFactory grains, string listenerName) =>
        grains.GetGrain<IConnectionDirectory>(listenerName).List();

    /// <summary>The live connections of a listener with their gateways' figures (age, bytes each way, pauses), across every silo.</summary>
    public static Task<ConnectionStatus[]> ListConnectionStatusAsync(this IGrainFactory grains, string listenerName) =>
        grains.GetGrain<IConnectionDirectory>(listenerName).ListStatus();

    /// <summary>
    /// Opens a connection to the Unix domain socket at <paramref name="path"/> served by a new <typeparamref name="TGrain"/>
    /// (asyncio <c>create_unix_connection</c>) and returns once it is connected.
    /// </summary>
    /// <exception cref="ProtocolConnectException">Refused, missing or timed out; nothing is left behind.</exception>
    public static Task<ConnectionInfo> CreateUnixConnectionAsync<TGrain>(this IGrainFactory grains, string path, Func<ConnectRequest, ConnectRequest>? configure = null)
        where TGrain : IProtocolGrain
    {
        ArgumentNullException.ThrowIfNull(grains);
        ArgumentException.ThrowIfNullOrEmpty(path);
        var request = ConnectRequest.ForUnix<TGrain>(path);
        return grains.GetGrain<IProtocolConnector>(0).Connect(configure?.Invoke(request) ?? request);
    }

    /// <summary>
    /// Opens a TCP connection to <paramref name="host"/>:<paramref name="port"/> served by a new
    /// <typeparamref name="TGrain"/> (asyncio <c>create_connection</c>) and returns once it is connected.
    /// </summary>
    /// <exception cref="ProtocolConnectException">Refused, unreachable or timed out; nothing is left behind.</exception>
    public static Task<ConnectionInfo> CreateConnectionAsync<TGrain>(this IGrainFactory grains, string host, int port, Func<ConnectRequest, ConnectRequest>? configure = null)
        where TGrain : IProtocolGrain
    {
        ArgumentNullException.ThrowIfNull(grains);
        var request = ConnectRequest.For<TGrain>(host, port);
        return grains.GetGrain<IProtocolConnector>(0).Connect(configure?.Invoke(request) ?? request);
    }
}
