namespace OrleansProtocol.Gateway.Connections;

/// <summary>
/// An auto-reset signal for one waiter: <see cref="Set"/> wakes the pending <see cref="WaitAsync"/>, or the next one.
/// </summary>
/// <param name="inline">
/// Run the waiter's continuation inside <see cref="Set"/>, on the caller's thread; the caller must hold no lock.
/// </param>
internal sealed class AsyncSignal(bool inline = false)
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

            _waiter ??= new TaskCompletionSource(inline ? TaskCreationOptions.None : TaskCreationOptions.RunContinuationsAsynchronously);
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
