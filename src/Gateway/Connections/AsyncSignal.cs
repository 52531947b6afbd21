namespace OrleansProtocol.Gateway.Connections;

/// <summary>
/// An auto-reset signal for one waiter: <see cref="Set"/> wakes the pending <see cref="WaitAsync"/>, or the next one.
/// </summary>
internal sealed class AsyncSignal
{
    private readonly Lock _lock = new();
    private TaskCompletionSource? _waiter;
    private bool _set;

    public Task WaitAsync()
    {
        lock (_lock)
        {
            if (_set)
            {
                _set = false;
                return Task.CompletedTask;
            }

            // Continuations run asynchronously: Set may be called under the connection's lock.
            _waiter ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _waiter.Task;
        }
    }

    public void Set()
    {
        TaskCompletionSource? waiter;
        lock (_lock)
        {
            waiter = _waiter;
            _waiter = null;
            _set = waiter is null;
        }

        waiter?.TrySetResult();
    }
}
