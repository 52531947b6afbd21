namespace OrleansProtocol.Gateway.Connections;

/// <summary>The silo-wide connection count, shared by every server of the gateway (<see cref="ProtocolGatewayOptions.MaxConnections"/>).</summary>
internal sealed class SiloConnectionBudget(int? max)
{
    private int _open;

    public int? Max => max;

    /// <summary>Connections counted as open (every listener's, and outbound ones).</summary>
    public int Open => Volatile.Read(ref _open);

    public bool Exhausted => max is { } limit && Volatile.Read(ref _open) >= limit;

    public void Opened() => Interlocked.Increment(ref _open);

    public void Closed() => Interlocked.Decrement(ref _open);
}
