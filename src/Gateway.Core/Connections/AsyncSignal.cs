using System.Threading.Tasks.Sources;

namespace OrleansProtocol.Gateway.Connections;

/// <summary>
/// An auto-reset signal for one waiter: <see cref="Set"/> wakes the pending <see cref="WaitAsync"/>, or the next one.
/// </summary>
/// <remarks>
/// One reusable value-task source instead of a <see cref="TaskCompletionSource"/> per wait, and no lock: the pump and
/// the writer each wait once per request, and an idle connection's waiting writer holds no extra objects.
/// </remarks>
/// <param name="inline">
/// Run the waiter's continuation inside <see cref="Set"/>, on the caller's thread; the caller must hold no lock.
/// </param>
internal sealed class AsyncSignal(bool inline = false) : IValueTaskSource
{
    private const int Idle = 0;
    private const int Signalled = 1;
    private const int Waiting = 2;

    private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = !inline };
    private int _state;

    /// <summary>Completes at the next <see cref="Set"/>, or at once if one came since the last wait. One waiter at a time.</summary>
    public ValueTask WaitAsync()
    {
        if (Interlocked.CompareExchange(ref _state, Idle, Signalled) == Signalled)
        {
            return ValueTask.CompletedTask;
        }

        // The previous wait has been consumed (one waiter), so the source can be reused.
        _core.Reset();
        if (Interlocked.CompareExchange(ref _state, Waiting, Idle) == Signalled)
        {
            // Set between the two exchanges: take it now.
            Volatile.Write(ref _state, Idle);
            return ValueTask.CompletedTask;
        }

        return new ValueTask(this, _core.Version);
    }

    public void Set()
    {
        while (true)
        {
            switch (Volatile.Read(ref _state))
            {
                case Signalled:
                    return;
                case Idle when Interlocked.CompareExchange(ref _state, Signalled, Idle) == Idle:
                    return;
                case Waiting when Interlocked.CompareExchange(ref _state, Idle, Waiting) == Waiting:
                    _core.SetResult(true);
                    return;
            }
        }
    }

    void IValueTaskSource.GetResult(short token) => _core.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}
