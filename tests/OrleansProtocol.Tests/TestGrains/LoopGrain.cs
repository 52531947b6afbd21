using System.Globalization;
using System.Text;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests.TestGrains;

/// <summary>
/// Exercises the connection's nursery: newline-terminated commands schedule callbacks and tasks, and everything that
/// runs is recorded, so tests can assert order, cancellation and what ran after ConnectionLost.
/// </summary>
public sealed class LoopGrain(CallbackRecorder recorder) : ProtocolGrain
{
    // The ticker task's own pace: the background work under test, not a synchronisation of the test.
    private static readonly TimeSpan TickInterval = TimeSpan.FromMilliseconds(10);

    private readonly StringBuilder _line = new();
    private readonly Dictionary<string, TimerHandle> _handles = [];
    private ConnectionRecord? _record;
    private bool _lost;

    private ConnectionRecord Record => _record!;

    protected override Task ConnectionMade(ProtocolTransport transport)
    {
        _record = recorder.For(transport.Connection);
        Record.Add("CM");
        return Task.CompletedTask;
    }

    protected override Task ConnectionLost(Exception? exception)
    {
        _lost = true;
        Record.Add("pending-timers-cancelled " + _handles.Values.All(h => h.Cancelled));
        Record.Lost(exception, CloseReason);
        return Task.CompletedTask;
    }

    protected override Task DataReceived(ReadOnlyMemory<byte> data)
    {
        foreach (var ch in Encoding.UTF8.GetString(data.Span))
        {
            if (ch != '\n')
            {
                _line.Append(ch);
                continue;
            }

            Run(_line.ToString().Split(' '));
            _line.Clear();
        }

        return Task.CompletedTask;
    }

    private void Run(string[] command)
    {
        switch (command[0])
        {
            case "later":
                {
                    // later NAME MILLISECONDS
                    var name = command[1];
                    var scheduledAt = Time();
                    var handle = CallLater(TimeSpan.FromMilliseconds(int.Parse(command[2], CultureInfo.InvariantCulture)), () =>
                    {
                        Record.Add($"fired {name}");
                        Record.Add($"on-time {name} {Time() >= _handles[name].When}");
                        Transport.Write(Encoding.UTF8.GetBytes($"fired {name}\n"));
                    });
                    _handles[name] = handle;
                    Record.Add($"when-ok {name} {handle.When >= scheduledAt + int.Parse(command[2], CultureInfo.InvariantCulture) / 1000.0 - 0.001}");
                    break;
                }

            case "cancel":
                _handles[command[1]].Cancel();
                break;
            case "soon":
                {
                    var name = command[1];
                    CallSoon(() => Record.Add($"soon {name}"));
                    break;
                }

            case "ticker":
                // A task that runs until cancelled, recording whether it ever ran after ConnectionLost had begun.
                CreateTask(async cancellation =>
                {
                    try
                    {
                        while (true)
                        {
                            Record.Add(_lost ? "ran-after-CL" : "tick");
                            await Task.Delay(TickInterval, cancellation);
                        }
                    }
                    finally
                    {
                        Record.Add(_lost ? "ticker-ended-after-CL" : "ticker-ended");
                    }
                }, "ticker");
                break;
            case "fail":
                CreateTask(async _ =>
                {
                    await Task.Yield();
                    throw new InvalidOperationException("background failure");
                }, "failing");
                break;
            case "fail-soon":
                CallSoon(() => throw new InvalidOperationException("callback failure"));
                break;
            case "close":
                Transport.Close();
                break;
            default:
                throw new ArgumentException($"unknown command '{string.Join(' ', command)}'");
        }
    }
}
