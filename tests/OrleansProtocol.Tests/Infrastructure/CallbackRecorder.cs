using System.Collections.Concurrent;
using System.Net;

namespace OrleansProtocol.Tests.Infrastructure;

/// <summary>
/// What test protocol grains saw, per connection, shared between the silo (which records) and the test (which waits
/// on it). Waiting is event-driven: every record wakes the waiters, which re-check their condition.
/// </summary>
public sealed class CallbackRecorder
{
    private readonly ConcurrentDictionary<string, ConnectionRecord> _byId = new();
    private readonly Signal _changed = new();

    public ConnectionRecord For(ConnectionInfo connection) =>
        _byId.GetOrAdd(connection.ConnectionId, _ => new ConnectionRecord(connection, _changed));

    public IReadOnlyCollection<ConnectionRecord> All => _byId.Values.ToArray();

    /// <summary>The record of the connection whose peer is <paramref name="clientEndPoint"/> (the test client's local end).</summary>
    /// <remarks>The OS reuses client ports: of the records with that peer, the live one (no ConnectionLost yet) is meant.</remarks>
    public Task<ConnectionRecord> ForClientAsync(EndPoint clientEndPoint) =>
        WaitAsync(() => _byId.Values.FirstOrDefault(r => Equals(r.Connection.RemoteEndPoint, clientEndPoint) && r.Count("CL") == 0));

    public async Task<T> WaitAsync<T>(Func<T?> probe, TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TestTimeouts.Default);
        while (true)
        {
            var changed = _changed.Next;
            if (probe() is { } value && !Equals(value, false))
            {
                return value;
            }

            await changed.WaitAsync(cts.Token);
        }
    }

    public Task WaitUntilAsync(Func<bool> condition, TimeSpan? timeout = null) =>
        WaitAsync<object>(() => condition() ? true : null, timeout);

    internal sealed class Signal
    {
        private TaskCompletionSource _next = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task Next => Volatile.Read(ref _next).Task;

        public void Fire() => Interlocked.Exchange(ref _next, new(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
    }
}

public sealed class ConnectionRecord
{
    private readonly List<string> _events = [];
    private readonly CallbackRecorder.Signal _changed;

    internal ConnectionRecord(ConnectionInfo connection, CallbackRecorder.Signal changed)
    {
        Connection = connection;
        _changed = changed;
    }

    public ConnectionInfo Connection { get; }

    public Exception? LostException { get; private set; }

    public ConnectionCloseReason LostReason { get; private set; }

    public int Activations;

    public long ReceivedBytes;

    /// <summary>Bytes the grain's "stream" command wrote, and the largest write buffer its transport reported meanwhile.</summary>
    public long StreamedBytes;

    public long PeakStreamBuffer;

    public IReadOnlyList<string> Events
    {
        get
        {
            lock (_events)
            {
                return _events.ToArray();
            }
        }
    }

    public int Count(string name) => Events.Count(e => e == name);

    public void Add(string name)
    {
        lock (_events)
        {
            _events.Add(name);
        }

        _changed.Fire();
    }

    public void Lost(Exception? exception, ConnectionCloseReason reason)
    {
        LostException = exception;
        LostReason = reason;
        Add("CL");
    }

    public void Touch() => _changed.Fire();
}
