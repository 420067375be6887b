function motorRigStream(src, evt, varargin)
%MOTORRIGSTREAM ScanImage user function: send every acquired frame to motor-rig over TCP.
%
%   Install in ScanImage (Settings > User Functions), four rows, each with
%   UserFcnName = motorRigStream and the same Arguments, e.g. {'127.0.0.1', 5555, 1}:
%       Event            what it does
%       acqModeStart     connects to the rig (the rig must already be listening)
%       frameAcquired    sends the frame just acquired
%       acqModeDone      disconnects
%       acqAbort         disconnects
%   Arguments (all optional): host (default '127.0.0.1'), port (5555), channel (the
%   ScanImage channel number to send, default 1).
%
%   Needs MATLAB R2020b or later (tcpclient with write). See docs/imaging_stream.md.
%
%   Wire format, little-endian, per frame: a 48-byte header, then the pixels row-major
%   (line by line, Y rows of X pixels), in the frame's own class (int16 normally).
%     offset size field
%      0     4    magic 'MRFS'
%      4     2    uint16 version = 1
%      6     2    uint16 header length = 48
%      8     8    uint64 frame number (ScanImage's, 1-based, counts across the acquisition mode)
%     16     8    double timestamp, s (frameTimestamp)
%     24     1    uint8 ndim = 2
%     25     1    uint8 dtype code (1 uint8, 2 int8, 3 uint16, 4 int16, 5 uint32, 6 int32,
%                 7 single, 8 double)
%     26     2    uint16 channel number
%     28    12    uint32 shape [Y X 0]
%     40     8    uint64 payload bytes = Y * X * bytes per pixel
%
%   A failure to send never stops the acquisition: the error is printed once and
%   streaming stops until the next acqModeStart.

persistent client
host = '127.0.0.1';
port = 5555;
channel = 1;
if numel(varargin) >= 1 && ~isempty(varargin{1}), host = varargin{1}; end
if numel(varargin) >= 2 && ~isempty(varargin{2}), port = varargin{2}; end
if numel(varargin) >= 3 && ~isempty(varargin{3}), channel = varargin{3}; end

switch evt.EventName
    case 'acqModeStart'
        client = [];
        try
            client = tcpclient(host, port, 'Timeout', 5, 'ConnectTimeout', 5);
        catch err
            warning('motorRigStream:connect', ...
                'motorRigStream: cannot connect to %s:%d (%s); not streaming.', ...
                host, port, err.message);
            client = [];
        end

    case 'frameAcquired'
        if isempty(client)
            return
        end
        try
            sendFrame(client, src.hSI, channel);
        catch err
            warning('motorRigStream:send', ...
                'motorRigStream: send failed (%s); streaming stopped.', err.message);
            client = [];
        end

    case {'acqModeDone', 'acqAbort'}
        client = [];  % deleting the tcpclient closes the connection: the rig sees a clean end
end
end

function sendFrame(client, hSI, channel)
stripe = hSI.hDisplay.stripeDataBuffer{hSI.hDisplay.stripeDataBufferPointer};
roi = stripe.roiData{1};
chIdx = find(roi.channels == channel, 1);
if isempty(chIdx)
    return  % this channel is not acquired
end
img = roi.imageData{chIdx}{1};
% ScanImage keeps images pixelsPerLine x linesPerFrame (a line is a column). MATLAB is
% column-major, so img(:) runs along each line first: row-major (Y, X) on the wire.
[nx, ny] = size(img);
payload = typecast(reshape(img, 1, []), 'uint8');
hdr = [uint8('MRFS'), ...
       typecast(uint16([1 48]), 'uint8'), ...
       typecast(uint64(stripe.frameNumberAcqMode), 'uint8'), ...
       typecast(double(stripe.frameTimestamp), 'uint8'), ...
       uint8([2 dtypeCode(class(img))]), ...
       typecast(uint16(channel), 'uint8'), ...
       typecast(uint32([ny nx 0]), 'uint8'), ...
       typecast(uint64(numel(payload)), 'uint8')];
write(client, [hdr payload]);
end

function code = dtypeCode(cls)
names = {'uint8', 'int8', 'uint16', 'int16', 'uint32', 'int32', 'single', 'double'};
code = find(strcmp(names, cls), 1);
if isempty(code)
    error('motorRigStream:dtype', 'motorRigStream: cannot stream images of class %s', cls);
end
end
