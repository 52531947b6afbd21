namespace OrleansProtocol.Gateway.Connections;

/// <summary>The connection id in every log entry of the connection's run (as Bedrock's <c>BeginConnectionScope</c>).</summary>
internal sealed class ConnectionLogScope(string connectionId) : IReadOnlyList<KeyValuePair<string, object?>>
{
    public int Count => 1;

    public KeyValuePair<string, object?> this[int index] =>
        index == 0 ? new("ConnectionId", connectionId) : throw new ArgumentOutOfRangeException(nameof(index));

    public IEnumerator<KeyValuePair<string, object?>> GetEnumerator()
    {
        yield return this[0];
    }

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();

    public override string ToString() => $"ConnectionId:{connectionId}";
}
