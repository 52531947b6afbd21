using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace OrleansProtocol;

/// <summary>
/// The connection as a nursery (trio), with asyncio's loop methods: background tasks, soon and timed callbacks, and
/// the loop clock. Everything a connection starts runs on the grain's scheduler (timed callbacks on grain timers),
/// is cancelled and awaited before its <c>ConnectionLost</c>, and a failure of any of it aborts the connection with
/// that exception, as a failed child cancels a trio nursery.
/// </summary>
public abstract partial class ProtocolGrain
{
    /// <summary>How long the nursery waits for tasks that ignore their cancellation before going on with a warning.</summary>
    private static readonly TimeSpan NurseryExitTimeout = TimeSpan.FromSeconds(10);

    // Made on first use: most connections never start a task or a timer, and an idle connection's grain should be small.
    private List<ConnectionTask>? _tasks;
    private HashSet<TimerHandle>? _timers;
    private Queue<TimerHandle>? _soon;
    private TimeProvider? _timeProvider;
    private bool _nurseryClosed;

    // The clock Orleans drives grain timers with (CallLater/CallAt run on grain timers), so a test's fake grain clock
    // moves both.
    private TimeProvider Clock => _timeProvider ??=
        ServiceProvider.GetKeyedService<TimeProvider>(TimeProviderNames.Grains) ?? ServiceProvider.GetService<TimeProvider>() ?? TimeProvider.System;

    /// <summary>The loop clock (asyncio <c>loop.time()</c>): monotonic seconds, the clock of <see cref="TimerHandle.When"/>.</summary>
    protected double Time() => Clock.GetTimestamp() / (double)Clock.TimestampFrequency;

    /// <summary>
    /// Starts background work owned by the connection (asyncio <c>create_task</c>). It starts once the current turn
    /// ends, on the grain's scheduler; its token is cancelled by <see cref="ConnectionTask.Cancel"/> or when the
    /// connection ends, and the connection's <c>ConnectionLost</c> waits for it. If it throws (other than by observing
    /// its cancellation), the error is logged and the connection is aborted with <c>ConnectionLost(exception)</c>.
    /// </summary>
    /// <exception cref="InvalidOperationException">The connection has ended.</exception>
    protected ConnectionTask CreateTask(Func<CancellationToken, Task> work, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(work);
        EnsureNurseryOpen();
        _tasks ??= [];
        var task = new ConnectionTask(name ?? $"task {_tasks.Count + 1}");
        _tasks.Add(task);
        _counts?.Task(1);
        task.Completion = RunTaskAsync(task, work);
        return task;
    }

    /// <summary>Runs <paramref name="callback"/> once the current turn ends, in FIFO order (asyncio <c>call_soon</c>).</summary>
    /// <exception cref="InvalidOperationException">The connection has ended.</exception>
    protected TimerHandle CallSoon(Action callback)
    {
        ArgumentNullException.ThrowIfNull(callback);
        EnsureNurseryOpen();
        var handle = new TimerHandle(Time(), callback, static _ => { });
        (_soon ??= new()).Enqueue(handle);
        if (_soon.Count == 1)
        {
            _ = RunSoonAsync();
        }

        return handle;
    }

    /// <summary>Runs <paramref name="callback"/> after <paramref name="delay"/>, on a grain timer (asyncio <c>call_later</c>).</summary>
    /// <exception cref="InvalidOperationException">The connection has ended.</exception>
    protected TimerHandle CallLater(TimeSpan delay, Action callback) => CallAt(Time() + Math.Max(0, delay.TotalSeconds), callback);

    /// <summary>Runs <paramref name="callback"/> at <paramref name="when"/> on the <see cref="Time"/> clock (asyncio <c>call_at</c>).</summary>
    /// <exception cref="InvalidOperationException">The connection has ended.</exception>
    protected TimerHandle CallAt(double when, Action callback)
    {
        ArgumentNullException.ThrowIfNull(callback);
        EnsureNurseryOpen();
        var handle = new TimerHandle(when, callback, h =>
        {
            _timers?.Remove(h);
            DisarmTimer(h);
        });
        ArmTimer(handle);
        (_timers ??= []).Add(handle);
        return handle;
    }

    /// <summary>A one-shot grain timer for the handle; it does not interleave with requests, so the callback is its own turn.</summary>
    private void ArmTimer(TimerHandle handle)
    {
        _counts?.Timer(1);
        handle.Timer = this.RegisterGrainTimer(
            static (state, _) =>
            {
                state.Grain.FireTimer(state.Handle);
                return Task.CompletedTask;
            },
            (Grain: this, Handle: handle),
            new GrainTimerCreationOptions(TimeSpan.FromSeconds(Math.Max(0, handle.When - Time())), Timeout.InfiniteTimeSpan)
            {
                Interleave = false,
                KeepAlive = false,
            });
    }

    private void DisarmTimer(TimerHandle handle)
    {
        if (handle.Timer is { } timer)
        {
            handle.Timer = null;
            timer.Dispose();
            _counts?.Timer(-1);
        }
    }

    private void FireTimer(TimerHandle handle)
    {
        DisarmTimer(handle);
        if (_timers?.Contains(handle) != true || handle.Cancelled || _nurseryClosed)
        {
            return;
        }

        // Grain timers can fire a little early (a millisecond, measured); asyncio never runs a timer before When.
        if (Time() < handle.When)
        {
            ArmTimer(handle);
            return;
        }

        _timers.Remove(handle);
        RunLoopCallback(handle, "timer callback");
    }

    private async Task RunSoonAsync()
    {
        // After the current turn, on the grain's scheduler.
        await Task.Yield();
        while (_soon!.TryPeek(out var handle))
        {
            if (!handle.Cancelled && !_nurseryClosed)
            {
                RunLoopCallback(handle, "CallSoon callback");
            }

            _soon.Dequeue();
        }
    }

    private void RunLoopCallback(TimerHandle handle, string what)
    {
        try
        {
            handle.Callback();
        }
        catch (Exception ex)
        {
            FailFromBackground(what, ex);
        }
    }

    private async Task RunTaskAsync(ConnectionTask task, Func<CancellationToken, Task> work)
    {
        // asyncio's create_task schedules the coroutine: the creating turn finishes first.
        await Task.Yield();
        try
        {
            if (!task.IsCancellationRequested)
            {
                await work(task.Token);
            }
        }
        catch (OperationCanceledException) when (task.IsCancellationRequested)
        {
        }
        catch (Exception ex)
        {
            FailFromBackground($"task '{task.Name}'", ex);
        }
        finally
        {
            _tasks!.Remove(task);
            _counts?.Task(-1);
        }
    }

    /// <summary>A child failed: abort the connection with its exception (a failed child cancels a trio nursery).</summary>
    private void FailFromBackground(string what, Exception exception)
    {
        var transport = _transport!;
        Logger.LogError(exception, "Connection {ConnectionId}: {What} failed; aborting the connection.", transport.Connection.ConnectionId, what);
        if (_lostDelivered)
        {
            return;
        }

        transport.Abort(ConnectionCloseReason.ApplicationError, $"{what} failed: {exception.GetType().Name}: {exception.Message}");

        // Not awaited here: the nursery's exit awaits every task, this failing one included.
        _ = DeliverConnectionLost(ConnectionCloseReason.ApplicationError, exception);
    }

    /// <summary>The nursery's exit: cancel every timer, pending callback and task, then wait for the tasks.</summary>
    private async Task ExitNurseryAsync()
    {
        _nurseryClosed = true;
        foreach (var timer in _timers?.ToArray() ?? [])
        {
            timer.Cancel();
        }

        foreach (var soon in _soon ?? [])
        {
            soon.Cancel();
        }

        var running = _tasks?.ToArray() ?? [];
        foreach (var task in running)
        {
            task.Cancel();
        }

        if (running.Length == 0)
        {
            return;
        }

        try
        {
            await Task.WhenAll(running.Select(t => t.Completion)).WaitAsync(NurseryExitTimeout);
        }
        catch (TimeoutException)
        {
            Logger.LogWarning(
                "Connection {ConnectionId}: {Count} task(s) did not finish within {Timeout} of their cancellation: {Tasks}.",
                _transport!.Connection.ConnectionId,
                running.Count(t => !t.IsCompleted),
                NurseryExitTimeout,
                string.Join(", ", running.Where(t => !t.IsCompleted).Select(t => t.Name)));
        }
    }

    private void EnsureNurseryOpen()
    {
        if (_transport is null || _nurseryClosed)
        {
            throw new InvalidOperationException("The connection has ended (or not begun): nothing can be started on it.");
        }
    }
}
