namespace OrleansProtocol.Gateway;

/// <summary>
/// A connection a <see cref="ProtocolServer"/> has just taken on, as <see cref="ProtocolServer.ConnectionAccepted"/>
/// reports it: for tools and test kits that follow a connection from the gateway's side (the test kit matches its
/// clients to their connections with it). Protocol code reaches a connection through its grain instead.
/// </summary>
public sealed class AcceptedConnection
{
    private readonly Connections.GatewayConnection _connection;
    private Task<ConnectionCloseReason>? _ended;

    internal AcceptedConnection(Connections.GatewayConnection connection) => _connection = connection;

    /// <summary>What the gateway knows of the connection now (after a PROXY header: the client it names).</summary>
    public ConnectionInfo Info => _connection.Info;

    /// <summary>
    /// Completes once the connection has ended and its grain was told (<c>ConnectionLost</c> delivered, before a
    /// graceful close's linger), with why it ended as the gateway recorded it.
    /// </summary>
    public Task<ConnectionCloseReason> Ended => _ended ??= EndedAsync();

    private async Task<ConnectionCloseReason> EndedAsync()
    {
        await _connection.GrainTold;
        return _connection.CloseReason;
    }
}
