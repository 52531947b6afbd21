using System.Text;
using OrleansProtocol.Tests.Infrastructure;
using OrleansProtocol.Wire;

namespace OrleansProtocol.Tests.TestGrains;

/// <summary>Lets a test act on a connection's grain from outside any callback.</summary>
public interface IScriptGrain : IProtocolGrain
{
    Task WriteNow(string text);

    Task CloseNow();

    Task ResumeReadingNow();

    Task<long> WriteBufferSize();
}

/// <summary>
/// A protocol driven by newline-terminated commands from the test client, recording every callback it gets in the
/// <see cref="CallbackRecorder"/>: CM, DR, ER, CL, PW, RW.
/// </summary>
public sealed class ScriptGrain(CallbackRecorder recorder) : ProtocolGrain, IScriptGrain
{
    private const int FloodChunk = 256 * 1024;

    private readonly StringBuilder _line = new();
    private ConnectionRecord? _record;
    private bool _keepOpenOnEof;
    private bool _writingPaused;
    private IGrainTimer? _flood;
    private long _floodRemaining;

    private ConnectionRecord Record => _record!;

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        return base.OnActivateAsync(cancellationToken);
    }

    protected override Task ConnectionMade(ProtocolTransport transport)
    {
        _record = recorder.For(transport.Connection);
        Interlocked.Increment(ref _record.Activations);
        Record.Add("CM");
        return Task.CompletedTask;
    }

    protected override async Task DataReceived(ReadOnlyMemory<byte> data)
    {
        Record.Add("DR");
        Interlocked.Add(ref Record.ReceivedBytes, data.Length);
        foreach (var ch in Encoding.UTF8.GetString(data.Span))
        {
            if (ch != '\n')
            {
                _line.Append(ch);
                continue;
            }

            var command = _line.ToString();
            _line.Clear();
            await Run(command);
        }
    }

    protected override Task<bool> EofReceived()
    {
        Record.Add("ER");
        if (_keepOpenOnEof)
        {
            Transport.Write("eof-received\n"u8);
        }

        return Task.FromResult(_keepOpenOnEof);
    }

    protected override Task ConnectionLost(Exception? exception)
    {
        _flood?.Dispose();
        Record.Lost(exception, CloseReason);
        return Task.CompletedTask;
    }

    protected override Task PauseWriting()
    {
        _writingPaused = true;
        Record.Add("PW");
        Record.Add($"PW-size {Transport.GetWriteBufferSize()}");
        return Task.CompletedTask;
    }

    protected override Task ResumeWriting()
    {
        _writingPaused = false;
        Record.Add("RW");
        Record.Add($"RW-size {Transport.GetWriteBufferSize()}");
        return Task.CompletedTask;
    }

    public Task WriteNow(string text)
    {
        Transport.Write(Encoding.UTF8.GetBytes(text));
        return Task.CompletedTask;
    }

    public Task CloseNow()
    {
        Transport.Close();
        return Task.CompletedTask;
    }

    public Task ResumeReadingNow()
    {
        Record.Add("resume");
        Transport.ResumeReading();
        return Task.CompletedTask;
    }

    public Task<long> WriteBufferSize() => Task.FromResult(Transport.GetWriteBufferSize());

    private Task Run(string command)
    {
        var parts = command.Split(' ', 2);
        var argument = parts.Length > 1 ? parts[1] : "";
        switch (parts[0])
        {
            case "note":
                Record.Add("note " + argument);
                break;
            case "echo":
                Transport.Write(Encoding.UTF8.GetBytes(argument + "\n"));
                break;
            case "close":
                Transport.Write("bye\n"u8);
                Transport.Close();
                break;
            case "blast":
                // Writes without regard for PauseWriting: only the gateway's hard cap stops it.
                for (var left = long.Parse(argument); left > 0; left -= 64 * 1024)
                {
                    Transport.Write(new byte[(int)Math.Min(left, 64 * 1024)]);
                }

                break;
            case "write-close":
                Transport.Write(new byte[int.Parse(argument)]);
                Transport.Close();
                break;
            case "abort-after":
                Transport.Write(new byte[int.Parse(argument)]);
                Transport.Abort();
                break;
            case "throw":
                throw new InvalidOperationException("boom: the protocol failed on purpose");
            case "write-eof":
                Transport.Write("eof-sent\n"u8);
                Transport.WriteEof();
                try
                {
                    Transport.Write("too late"u8);
                    Record.Add("write-after-eof-accepted");
                }
                catch (InvalidOperationException)
                {
                    Record.Add("write-after-eof-threw");
                }

                break;
            case "pause2":
                Transport.PauseReading();
                Transport.PauseReading();
                Record.Add(Transport.IsReading ? "still-reading" : "paused");
                break;
            case "close-then-write":
                Transport.Close();
                for (var i = 0; i < 10; i++)
                {
                    Transport.Write("dropped"u8);
                }

                Record.Add("wrote-after-close");
                break;
            case "keep-open":
                _keepOpenOnEof = true;
                Transport.Write("ok\n"u8);
                break;
            case "extra":
                Transport.Write(Encoding.UTF8.GetBytes(
                    $"{Transport.GetExtraInfo(ExtraInfoKeys.PeerName)} {Transport.GetExtraInfo(ExtraInfoKeys.SockName)} {Transport.GetExtraInfo("nope", "default")}\n"));
                break;
            case "whereami":
                Transport.Write(Encoding.UTF8.GetBytes(RuntimeIdentity + "\n"));
                break;
            case "tls":
                Transport.Write(Encoding.UTF8.GetBytes(
                    $"{Transport.GetExtraInfo(ExtraInfoKeys.SslProtocol)} {Transport.GetExtraInfo(ExtraInfoKeys.Cipher)} " +
                    $"{Transport.CanWriteEof} {Transport.GetExtraInfo(ExtraInfoKeys.SslContext) is not null}\n"));
                break;
            case "stream":
                // A timer writing 64 KiB per tick with no regard for PauseWriting: only the hard cap stops it.
                _floodRemaining = long.Parse(argument);
                _flood = this.RegisterGrainTimer(StreamTick, new GrainTimerCreationOptions(TimeSpan.Zero, TimeSpan.FromMilliseconds(2)));
                break;
            case "flood":
                // Produce like an asyncio protocol that honours pause_writing: write while not paused.
                _floodRemaining = long.Parse(argument);
                _flood = this.RegisterGrainTimer(FloodTick, new GrainTimerCreationOptions(TimeSpan.Zero, TimeSpan.FromMilliseconds(5)));
                break;
            default:
                throw new ArgumentException($"unknown command '{command}'");
        }

        return Task.CompletedTask;
    }

    private Task StreamTick()
    {
        if (Transport.IsClosing || _floodRemaining <= 0)
        {
            return Task.CompletedTask;
        }

        var chunk = (int)Math.Min(64 * 1024, _floodRemaining);
        Transport.Write(new byte[chunk]);
        if (!Transport.IsClosing)
        {
            _floodRemaining -= chunk;
            Record.StreamedBytes += chunk;
            Record.PeakStreamBuffer = Math.Max(Record.PeakStreamBuffer, Transport.GetWriteBufferSize());
        }

        return Task.CompletedTask;
    }

    private Task FloodTick()
    {
        Record.Touch();
        if (_writingPaused || Transport.IsClosing)
        {
            return Task.CompletedTask;
        }

        var chunk = (int)Math.Min(FloodChunk, _floodRemaining);
        if (chunk > 0)
        {
            Transport.Write(new byte[chunk]);
            _floodRemaining -= chunk;
        }

        return Task.CompletedTask;
    }
}
