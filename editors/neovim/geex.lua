-- Geex in Neovim 0.11 or newer: code completion from a running `geex serve`, and the
-- assistant's tasks on a selection.
--
-- Completion goes through tabby-agent (Tabby's editor agent, `npm install -g tabby-agent@1.5.0`)
-- run as a language server: `geex serve` speaks Tabby's API, and the agent does what every editor
-- needs (the text around the cursor, debounce, caching, cutting the answer). The agent reads its
-- server and key from ~/.tabby-client/agent/config.toml. tabby-agent 1.5.0 answers
-- textDocument/completion, not textDocument/inlineCompletion, so there is no ghost text: the
-- completion key (Alt-\ in insert mode) asks for a completion and inserts all of it. <C-x><C-o>
-- lists it too, but Neovim 0.11 inserts a plain-text menu item only up to its first space.
--
-- The tasks run `geex task VERB -` on the selected lines and stream the answer into a new split:
--   :'<,'>GeexTranslate go     :'<,'>GeexExplain     :'<,'>GeexComment zh
--
-- Install: copy this file to ~/.config/nvim/lua/geex.lua and put in your init.lua
--   require('geex').setup({ url = 'http://127.0.0.1:8000' })

local M = {}

M.defaults = {
  -- The language server's command line.
  agent = { 'tabby-agent', '--lsp', '--stdio' },
  -- The geex command that runs the tasks; its key comes from $GEEX_API_KEY.
  geex = { 'geex' },
  -- The server the tasks ask (the agent's own is in its config.toml).
  url = 'http://127.0.0.1:8000',
  -- The filetypes the agent attaches to (nil: every file).
  filetypes = nil,
  -- The insert-mode key that asks for a completion at the cursor and inserts it (false: none).
  complete_key = '<M-\\>',
  -- Filetypes whose name is not one the server knows, and the server's name for them; the
  -- table here is added to the built-in one below.
  languages = {},
}

-- Neovim's filetypes that `geex serve` does not know by that name (it knows its own keys and
-- aliases: python, py, javascript, js, sh, cs, objc, make, ...).
M.languages = {
  javascriptreact = 'javascript',
  typescriptreact = 'typescript',
  plaintex = 'tex',
  lhaskell = 'literate-haskell',
  litcoffee = 'literate-coffeescript',
  mma = 'mathematica',
  st = 'smalltalk',
  idris2 = 'idris',
  bsv = 'bluespec',
  ocamlinterface = 'ocaml',
  antlr4 = 'antlr',
  xhtml = 'html',
}

local config = vim.deepcopy(M.defaults)

--- The server's name for a filetype: the table's, else the filetype itself; of a compound
--- filetype ("javascript.jsx") its first part.
function M.language(filetype)
  local first = vim.split(filetype, '.', { plain = true })[1]
  return config.languages[filetype] or M.languages[filetype] or config.languages[first]
    or M.languages[first] or first
end

local function notify(message, level)
  vim.notify('geex: ' .. message, level or vim.log.levels.ERROR)
end

--- The first of the agent's completion items applied to the buffer, the cursor at its end.
local function accept(bufnr, item, encoding)
  local edit = item.textEdit
  if not edit then -- the agent always sends one; an item without it has nothing to place
    return notify('the completion has no text edit: ' .. vim.inspect(item))
  end
  local start = edit.range.start
  local line = vim.api.nvim_buf_get_lines(bufnr, start.line, start.line + 1, true)[1]
  local start_col = vim.str_byteindex(line, encoding, start.character, false)
  vim.lsp.util.apply_text_edits({ edit }, bufnr, encoding)
  local lines = vim.split(edit.newText, '\n', { plain = true })
  local row = start.line + #lines
  local col = #lines[#lines] + (#lines == 1 and start_col or 0)
  local win = vim.fn.bufwinid(bufnr)
  if win ~= -1 then
    vim.api.nvim_win_set_cursor(win, { row, col })
  end
end

--- Asks the language server for a completion at the cursor and inserts its first choice,
--- unless the text changed while the request was out.
function M.complete()
  local bufnr = vim.api.nvim_get_current_buf()
  local client = vim.lsp.get_clients({ bufnr = bufnr, name = 'geex' })[1]
  if not client then
    return notify('the language server is not running for this buffer (:checkhealth vim.lsp)')
  end
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  local tick = vim.b[bufnr].changedtick
  client:request('textDocument/completion', params, function(err, result)
    if err then
      return notify('the language server failed: ' .. err.message)
    end
    local items = result and (result.items or result) or {}
    if #items == 0 then
      return notify('no completion here', vim.log.levels.INFO)
    end
    if vim.b[bufnr].changedtick == tick then
      accept(bufnr, items[1], client.offset_encoding)
    end
  end, bufnr)
end

--- `geex task VERB -` on lines first..last of the current buffer, its answer streamed into a
--- new split. Closing the split stops the task. Returns the new buffer and the task's process
--- (a vim.SystemObj).
function M.task(verb, first, last, flags)
  local source = vim.api.nvim_get_current_buf()
  local filetype = vim.bo[source].filetype
  if filetype == '' then
    return notify('the buffer has no filetype, so the code\'s language is unknown (:set ft=...)')
  end
  local code = table.concat(vim.api.nvim_buf_get_lines(source, first - 1, last, true), '\n')
  local command = vim.list_extend(vim.deepcopy(config.geex), { 'task', verb, '-', '--language',
    M.language(filetype), '--url', config.url })
  vim.list_extend(command, flags or {})

  vim.cmd('new')
  local answer = vim.api.nvim_get_current_buf()
  vim.bo[answer].buftype = 'nofile'
  vim.bo[answer].bufhidden = 'wipe'
  vim.api.nvim_buf_set_name(answer, ('geex %s #%d'):format(verb, answer))
  local received = ''
  local function show(text)
    if vim.api.nvim_buf_is_valid(answer) then
      vim.api.nvim_buf_set_lines(answer, 0, -1, false, vim.split(text, '\n', { plain = true }))
    end
  end
  local function on_stdout(_, chunk)
    if chunk then
      received = received .. chunk
      vim.schedule(function() show(received) end)
    end
  end
  local ok, started = pcall(vim.system, command, { stdin = code .. '\n', text = true,
    stdout = on_stdout }, function(done)
    vim.schedule(function()
      if not vim.api.nvim_buf_is_valid(answer) then
        return -- the split was closed, which stopped the task: nothing to show or report
      end
      if done.code ~= 0 then
        if received == '' then
          vim.api.nvim_buf_delete(answer, { force = true }) -- no answer: no empty split left
        end
        -- geex's own error line already names it: "geex task: error: ..."
        local reason = vim.trim(done.stderr)
        return vim.notify(reason ~= '' and reason or ('geex task: exit code ' .. done.code),
          vim.log.levels.ERROR)
      end
      show((received:gsub('\n$', '')))
      vim.b[answer].geex_task_done = true
    end)
  end)
  if not ok then
    vim.api.nvim_buf_delete(answer, { force = true })
    return notify(('cannot run %s (%s): install Geex, or name its command in setup({ geex = ... })')
      :format(command[1], tostring(started):match('ENOENT') and 'not found' or tostring(started)))
  end
  -- A closed split wants no more of the answer: stop the task, and so the server's generation.
  vim.api.nvim_create_autocmd('BufWipeout', {
    buffer = answer,
    once = true,
    callback = function()
      if not started:is_closing() then
        started:kill('sigterm')
      end
    end,
  })
  return answer, started
end

local function task_command(name, verb, flags_of, nargs)
  vim.api.nvim_create_user_command(name, function(args)
    local answer = M.task(verb, args.line1, args.line2, flags_of(args.fargs))
    if answer and verb == 'translate' then
      vim.bo[answer].filetype = args.fargs[1]
    end
  end, { range = '%', nargs = nargs })
end

function M.setup(opts)
  config = vim.tbl_extend('force', vim.deepcopy(M.defaults), opts or {})
  vim.lsp.config('geex', { cmd = config.agent, filetypes = config.filetypes })
  vim.lsp.enable('geex')
  if config.complete_key then
    vim.keymap.set('i', config.complete_key, M.complete, { desc = 'geex: complete at the cursor' })
  end
  task_command('GeexTranslate', 'translate', function(fargs)
    return { '--to', fargs[1] }
  end, 1)
  task_command('GeexExplain', 'explain', function(fargs)
    return { '--lang', fargs[1] or 'en' }
  end, '?')
  task_command('GeexComment', 'comment', function(fargs)
    return { '--lang', fargs[1] or 'en' }
  end, '?')
end

return M
