namespace OrleansProtocol;

/// <summary>Outbound connections, from any grain, silo code or external Orleans client.</summary>
public static class ProtocolConnections
{
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
