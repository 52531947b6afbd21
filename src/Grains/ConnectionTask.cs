namespace OrleansProtocol;

/// <summary>
/// Background work owned by a connection (asyncio's <c>Task</c> from <c>create_task</c>), started with
/// <c>ProtocolGrain.CreateTask</c>. It runs on the grain's scheduler, is cancelled and awaited before the
/// connection's <c>ConnectionLost</c>, and if it fails, its connection is aborted with that exception.
/// </summary>
public sealed class ConnectionTask
{
    private readonly CancellationTokenSource _cancellation = new();

    internal ConnectionTask(string name) => Name = name;

    /// <summary>The name given at creation, used in logs.</summary>
    public string Name { get; }

    /// <summary>Completes when the work has finished, failed or observed its cancellation. Never faults.</summary>
    public Task Completion { get; internal set; } = Task.CompletedTask;

    /// <summary>True once the work has finished.</summary>
    public bool IsCompleted => Completion.IsCompleted;

    /// <summary>True once <see cref="Cancel"/> was called or the connection ended.</summary>
    public bool IsCancellationRequested => _cancellation.IsCancellationRequested;

    internal CancellationToken Token => _cancellation.Token;

    /// <summary>Requests cancellation: the token passed to the work is cancelled.</summary>
    public void Cancel() => _cancellation.Cancel();
}

/// <summary>
/// A callback scheduled with <c>CallSoon</c>, <c>CallLater</c> or <c>CallAt</c> (asyncio's <c>Handle</c>/<c>TimerHandle</c>).
/// </summary>
public sealed class TimerHandle
{
    private readonly Action<TimerHandle> _onCancel;

    internal TimerHandle(double when, Action callback, Action<TimerHandle> onCancel)
    {
        When = when;
        Callback = callback;
        _onCancel = onCancel;
    }

    /// <summary>When the callback is due, on the <c>Time()</c> clock, in seconds (asyncio <c>TimerHandle.when()</c>).</summary>
    public double When { get; }

    /// <summary>True once <see cref="Cancel"/> was called or the connection ended before the callback ran.</summary>
    public bool Cancelled { get; private set; }

    internal Action Callback { get; }

    internal IGrainTimer? Timer { get; set; }

    /// <summary>Prevents the callback from running, if it has not run yet. Idempotent.</summary>
    public void Cancel()
    {
        if (Cancelled)
        {
            return;
        }

        Cancelled = true;
        _onCancel(this);
    }
}
