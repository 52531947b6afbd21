namespace OrleansProtocol.Tests.TestGrains;

/// <summary>Writes "bye" and closes as soon as the connection is made: the flush-before-close check.</summary>
public sealed class ByeGrain : ProtocolGrain
{
    protected override Task ConnectionMade(ProtocolTransport transport)
    {
        transport.Write("bye"u8);
        transport.Close();
        return Task.CompletedTask;
    }
}

/// <summary>
/// Echoes, and keeps the connection half-open when the peer half-closes: it closes from a timer afterwards, so the
/// close travels through the observer behind every echoed byte.
/// </summary>
public sealed class HalfOpenEchoGrain : ProtocolGrain
{
    protected override Task DataReceived(ReadOnlyMemory<byte> data)
    {
        Transport.Write(data.Span);
        return Task.CompletedTask;
    }

    protected override Task<bool> EofReceived()
    {
        IGrainTimer? timer = null;
        timer = this.RegisterGrainTimer(() =>
        {
            timer!.Dispose();
            Transport.Close();
            return Task.CompletedTask;
        }, new GrainTimerCreationOptions(TimeSpan.Zero, Timeout.InfiniteTimeSpan));
        return Task.FromResult(true);
    }
}

/// <summary>Writes 32 MiB (more than the kernel takes at once), then hands the connection to <see cref="ScriptGrain"/>.</summary>
public sealed class WriteThenUpgradeGrain : ProtocolGrain
{
    public const int Written = 32 * 1024 * 1024;

    protected override Task ConnectionMade(ProtocolTransport transport)
    {
        transport.Write(new byte[Written]);
        transport.SetProtocol<ScriptGrain>();
        return Task.CompletedTask;
    }
}

/// <summary>Echoes lines; when the server closes the connection (a clock, a limit, a drain), says why first.</summary>
public sealed class GoodbyeGrain(Infrastructure.CallbackRecorder recorder) : ProtocolGrain
{
    protected override Task ConnectionMade(ProtocolTransport transport)
    {
        recorder.For(transport.Connection).Add("CM");
        return Task.CompletedTask;
    }

    protected override Task DataReceived(ReadOnlyMemory<byte> data)
    {
        Transport.Write(data.Span);
        return Task.CompletedTask;
    }

    protected override Task CloseRequested(ConnectionCloseReason reason, string? message)
    {
        recorder.For(Transport.Connection).Add($"CR {reason}");
        Transport.Write(System.Text.Encoding.UTF8.GetBytes($"-ERR closing: {reason}\r\n"));
        return Task.CompletedTask;
    }

    protected override Task ConnectionLost(Exception? exception)
    {
        recorder.For(Transport.Connection).Lost(exception, CloseReason);
        return Task.CompletedTask;
    }
}

/// <summary>
/// Holds one of everything a connection grain can hold — a timer armed far ahead, a running task — and takes commands:
/// <c>echo X</c>, <c>upgrade</c> (hands the connection to <see cref="Samples.EchoGrain"/>), <c>stall</c> (pauses reading and
/// writes 16 MiB, more than the kernel's buffers take, so both directions are paused while the peer reads nothing).
/// </summary>
public sealed class GiveBackGrain(Infrastructure.CallbackRecorder recorder) : ProtocolGrain
{
    private readonly System.Text.StringBuilder _line = new();

    protected override Task PauseWriting()
    {
        recorder.For(Transport.Connection).Add("PW");
        return Task.CompletedTask;
    }

    // Every recorded connection records its end too: a record left open would be taken for a later client's that
    // reuses the same port.
    protected override Task ConnectionLost(Exception? exception)
    {
        recorder.For(Transport.Connection).Lost(exception, CloseReason);
        return Task.CompletedTask;
    }

    protected override Task ConnectionMade(ProtocolTransport transport)
    {
        CallLater(TimeSpan.FromHours(1), () => transport.Write("late\n"u8));
        CreateTask(ct => Task.Delay(Timeout.Infinite, ct), "forever");
        return Task.CompletedTask;
    }

    protected override Task DataReceived(ReadOnlyMemory<byte> data)
    {
        var span = data.Span;
        for (var i = 0; i < span.Length; i++)
        {
            if (span[i] != (byte)'\n')
            {
                _line.Append((char)span[i]);
                continue;
            }

            var line = _line.ToString();
            _line.Clear();
            if (line == "upgrade")
            {
                // What followed the command in this read is the new protocol's.
                Transport.SetProtocol<Samples.EchoGrain>(span[(i + 1)..]);
                return Task.CompletedTask;
            }

            if (line == "stall")
            {
                Transport.PauseReading();
                Transport.Write(new byte[16 * 1024 * 1024]);
                continue;
            }

            Transport.Write(System.Text.Encoding.UTF8.GetBytes(line + "\n"));
        }

        return Task.CompletedTask;
    }
}

/// <summary>A protocol whose ConnectionMade fails: the connection is aborted before it is ever read.</summary>
public sealed class ThrowOnMadeGrain : ProtocolGrain
{
    protected override Task ConnectionMade(ProtocolTransport transport)
    {
        CallLater(TimeSpan.FromHours(1), () => { });
        throw new InvalidOperationException("ConnectionMade fails on purpose");
    }
}

/// <summary>
/// A slow but healthy opening: <c>ConnectionMade</c> waits for the test's <see cref="Gate"/> (storage that takes its
/// time, say), then echoes. Records each <c>ConnectionMade</c> it runs.
/// </summary>
public sealed class SlowOpeningGrain(Infrastructure.CallbackRecorder recorder) : ProtocolGrain
{
    /// <summary>Opened by the test to let every waiting <c>ConnectionMade</c> finish.</summary>
    public static TaskCompletionSource Gate { get; set; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    protected override async Task ConnectionMade(ProtocolTransport transport)
    {
        recorder.For(transport.Connection).Add("CM");
        await Gate.Task;
    }

    protected override Task DataReceived(ReadOnlyMemory<byte> data)
    {
        Transport.Write(data.Span);
        return Task.CompletedTask;
    }
}
