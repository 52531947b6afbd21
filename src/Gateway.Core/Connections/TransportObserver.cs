using OrleansProtocol.Wire;

namespace OrleansProtocol.Gateway.Connections;

/// <summary>
/// The silo's one transport observer: a push from a connection's grain is applied to that connection, found by the
/// grain's id. A push from a protocol that handed the connection over (<c>SetProtocol</c>: another grain type) is
/// recognised and dropped. Orleans holds observers weakly: the gateway holds this one for the silo's life.
/// </summary>
internal sealed class TransportObserver(Func<string, GatewayConnection?> find) : ITransportObserver
{
    /// <summary>Never blocks and never calls the grain back, so a grain awaiting it cannot deadlock with the gateway.</summary>
    public Task<long> Send(GrainId grain, TransportBatch batch)
    {
        var connectionId = grain.Key.ToString()!;
        return find(connectionId) is { } connection
            ? Task.FromResult(connection.ApplyPush(grain, batch))
            : Task.FromException<long>(new ConnectionClosedException(ConnectionCloseReason.None, $"Connection {connectionId} has ended."));
    }
}
