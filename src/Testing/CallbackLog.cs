using System.Collections.Concurrent;
using OrleansProtocol.Wire;

namespace OrleansProtocol.Testing;

/// <summary>
/// Every call the gateway makes to a protocol grain (<see cref="IProtocolGrain"/>), in the order the grain received
/// them, per connection id: recorded by a grain call filter in the test host's silo, so any protocol is covered
/// without changes to it.
/// </summary>
public sealed class CallbackLog
{
    private readonly ConcurrentDictionary<string, List<ProtocolCallback>> _byConnection = new();
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The callbacks of one connection so far, in order.</summary>
    public IReadOnlyList<ProtocolCallback> For(string connectionId)
    {
        var list = _byConnection.GetOrAdd(connectionId, _ => []);
        lock (list)
        {
            return [.. list];
        }
    }

    /// <summary>
    /// Waits until <paramref name="client"/>'s grain has handled (not only received) a callback that matches
    /// <paramref name="match"/>: then what it did in that callback (a timer armed, a task started) has happened.
    /// </summary>
    /// <returns>The first such callback.</returns>
    /// <exception cref="TimeoutException">None came within the client's <see cref="ProtocolTestClient.Timeout"/>; the message lists what was recorded.</exception>
    public async Task<ProtocolCallback> WaitUntilAsync(ProtocolTestClient client, Func<ProtocolCallback, bool> match)
    {
        var connectionId = (await client.ConnectionAsync()).ConnectionId;
        using var timeout = new CancellationTokenSource(client.Timeout);
        while (true)
        {
            var changed = Volatile.Read(ref _changed).Task;
            var recorded = For(connectionId);
            if (recorded.FirstOrDefault(c => c.Handled && match(c)) is { } found)
            {
                return found;
            }

            try
            {
                await changed.WaitAsync(timeout.Token);
            }
            catch (OperationCanceledException) when (timeout.IsCancellationRequested)
            {
                var seen = recorded.Count == 0 ? "nothing" : string.Join(", ", recorded.Select(c => c.Handled ? c.ToString() : $"{c} (still running)"));
                throw new TimeoutException($"Connection {connectionId}: no handled callback matched within {client.Timeout.TotalSeconds:0.#} s. Recorded: {seen}.");
            }
        }
    }

    /// <summary>Waits until <paramref name="client"/>'s grain has handled a callback named <paramref name="name"/> (one of <see cref="ProtocolCallback.Names"/>).</summary>
    /// <exception cref="ArgumentException"><paramref name="name"/> is not a name the log records.</exception>
    /// <exception cref="TimeoutException">None came within the client's <see cref="ProtocolTestClient.Timeout"/>; the message lists what was recorded.</exception>
    public Task<ProtocolCallback> WaitUntilAsync(ProtocolTestClient client, string name) =>
        ProtocolCallback.Names.Contains(name, StringComparer.Ordinal)
            ? WaitUntilAsync(client, c => c.Name == name)
            : throw new ArgumentException($"'{name}' is never recorded; the names are {string.Join(", ", ProtocolCallback.Names)}.", nameof(name));

    /// <summary>A callback finished (or one arrived): wake the waiters.</summary>
    internal void Changed() => Interlocked.Exchange(ref _changed, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();

    internal void Add(string connectionId, IEnumerable<ProtocolCallback> callbacks)
    {
        var list = _byConnection.GetOrAdd(connectionId, _ => []);
        lock (list)
        {
            list.AddRange(callbacks);
        }

        Changed();
    }

    /// <summary>What the grain left for later (it paused reading): recorded again when it comes again.</summary>
    internal void Remove(string connectionId, IEnumerable<ProtocolCallback> callbacks)
    {
        var list = _byConnection.GetOrAdd(connectionId, _ => []);
        lock (list)
        {
            var gone = callbacks.ToHashSet(ReferenceEqualityComparer.Instance);
            list.RemoveAll(gone.Contains);
        }
    }
}

/// <summary>
/// One callback a protocol grain received, named as the <see cref="ProtocolGrain"/> method a protocol overrides:
/// <c>ConnectionMade</c>, <c>DataReceived</c>, <c>FrameReceived</c> (one entry per frame, however many came in one
/// call; frames the grain left for later because it paused reading are recorded when they come again),
/// <c>EofReceived</c>, <c>PauseWriting</c>, <c>ResumeWriting</c>, <c>TlsStarted</c>, <c>CloseRequested</c>,
/// <c>ConnectionLost</c>; and the gateway's own calls <c>Hibernate</c>, <c>Wake</c> and <c>Locate</c>.
/// </summary>
/// <param name="Name">One of <see cref="Names"/>.</param>
/// <param name="Data">The bytes of <c>DataReceived</c>, or the frame of <c>FrameReceived</c>; empty otherwise.</param>
/// <param name="Reason">The reason of <c>ConnectionLost</c> and <c>CloseRequested</c>; <see cref="ConnectionCloseReason.None"/> otherwise.</param>
public sealed record ProtocolCallback(string Name, ReadOnlyMemory<byte> Data, ConnectionCloseReason Reason)
{
    /// <summary>Every name the log records, in the order a connection usually meets them.</summary>
    public static IReadOnlyList<string> Names { get; } =
        ["ConnectionMade", "DataReceived", "FrameReceived", "EofReceived", "PauseWriting", "ResumeWriting", "TlsStarted", "CloseRequested", "ConnectionLost", "Hibernate", "Wake", "Locate"];

    /// <summary>Whether the grain has finished handling it (its reply is on the way back to the gateway).</summary>
    public bool Handled { get; internal set; }

    /// <summary><see cref="Name"/>, with the reason when there is one (<c>ConnectionLost PeerClosed</c>): what tests compare.</summary>
    public override string ToString() => Reason == ConnectionCloseReason.None ? Name : $"{Name} {Reason}";
}
