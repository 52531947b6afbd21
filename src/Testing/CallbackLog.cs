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
    public async Task<ProtocolCallback> WaitUntilAsync(ProtocolTestClient client, Func<ProtocolCallback, bool> match)
    {
        var connectionId = (await client.ConnectionAsync()).ConnectionId;
        using var timeout = new CancellationTokenSource(client.Timeout);
        while (true)
        {
            var changed = Volatile.Read(ref _changed).Task;
            if (For(connectionId).FirstOrDefault(c => c.Handled && match(c)) is { } found)
            {
                return found;
            }

            await changed.WaitAsync(timeout.Token);
        }
    }

    /// <summary>A callback finished (or one arrived): wake the waiters.</summary>
    internal void Changed() => Interlocked.Exchange(ref _changed, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();

    internal void Add(string connectionId, ProtocolCallback callback)
    {
        var list = _byConnection.GetOrAdd(connectionId, _ => []);
        lock (list)
        {
            list.Add(callback);
        }

        Changed();
    }
}

/// <summary>One call to a protocol grain: its name, and what it carried.</summary>
/// <param name="Name">The <see cref="IProtocolGrain"/> method: <c>ConnectionMade</c>, <c>DataReceived</c>, <c>FramesReceived</c>, <c>EofReceived</c>, <c>PauseWriting</c>, <c>ResumeWriting</c>, <c>CloseRequested</c>, <c>ConnectionLost</c>.</param>
/// <param name="Data">The bytes of <c>DataReceived</c>, or the frames of <c>FramesReceived</c> one after another; empty otherwise.</param>
/// <param name="Reason">The reason of <c>ConnectionLost</c> and <c>CloseRequested</c>; <see cref="ConnectionCloseReason.None"/> otherwise.</param>
public sealed record ProtocolCallback(string Name, ReadOnlyMemory<byte> Data, ConnectionCloseReason Reason)
{
    /// <summary>Whether the grain has finished handling it (its reply is on the way back to the gateway).</summary>
    public bool Handled { get; internal set; }

    /// <summary><see cref="Name"/>, with the reason when there is one (<c>ConnectionLost PeerClosed</c>): what tests compare.</summary>
    public override string ToString() => Reason == ConnectionCloseReason.None ? Name : $"{Name} {Reason}";
}
