namespace OrleansProtocol.Gateway.Connections;

/// <summary>
/// The grain observer a connection's grain pushes its unsolicited operations to. One per protocol of the connection
/// (a new one after <c>SetProtocol</c>), so a push from a protocol that handed the connection over is recognised and
/// dropped. Orleans holds observers weakly: the connection holds this one for as long as it is in use.
/// </summary>
internal sealed class TransportObserver(GatewayConnection connection, int epoch) : ITransportObserver
{
    /// <summary>Never blocks and never calls the grain back, so a grain awaiting it cannot deadlock with the gateway.</summary>
    public Task<long> Send(TransportBatch batch)
    {
        connection.Apply(batch, epoch);
        return Task.FromResult(connection.ProtocolBytesSent);
    }
}
